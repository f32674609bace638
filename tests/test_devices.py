"""Device and precision policy (swinir_cli.devices)."""

from __future__ import annotations

import pytest
import torch

from swinir_cli.devices import cuda_tf32


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
