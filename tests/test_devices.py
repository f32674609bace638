"""Device and precision policy (swinir_cli.devices)."""

from __future__ import annotations

import pytest
import torch

from swinir_cli.devices import cuda_tf32, resolve_engine
from swinir_cli.errors import UsageError


def test_tf32_switch_sets_and_restores_cuda_flags() -> None:
    """The flags are process-wide settings that also exist in CPU builds; they are set only inside."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for enabled in (True, False):
        with cuda_tf32(enabled):
            assert torch.backends.cuda.matmul.allow_tf32 is enabled
            assert torch.backends.cudnn.allow_tf32 is enabled
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(RuntimeError), cuda_tf32(True):
        raise RuntimeError("a failing forward")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_engines_are_checked() -> None:
    assert resolve_engine("auto", torch.device("cpu")) == "torch"
    assert resolve_engine("openvino", torch.device("cpu")) == "openvino"
    with pytest.raises(UsageError, match="unknown engine"):
        resolve_engine("tensorrt", torch.device("cpu"))
    # No GPU here: only the device object is needed to refuse OpenVINO off the CPU.
    with pytest.raises(UsageError, match="runs on the CPU"):
        resolve_engine("openvino", torch.device("cuda", 0))
