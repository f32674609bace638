"""Inference engines other than PyTorch's own, each imported only when chosen (optional dependencies)."""
