"""swinir-cli: restore images with SwinIR (super-resolution, denoising, JPEG artifact removal)."""

__version__ = "0.1.0"
