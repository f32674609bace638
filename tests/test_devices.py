"""Device and precision policy (swinir_cli.devices)."""

from __future__ import annotations

import pytest
import torch

from swinir_cli.devices import PRECISIONS, cuda_tf32, resolve_precision
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


@pytest.mark.parametrize(
    ("capability", "expected"), [((8, 0), torch.float16), ((7, 0), torch.float16), ((6, 1), torch.float32)]
)
def test_auto_precision_is_fp16_on_cuda_from_compute_capability_7(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: torch.dtype
) -> None:
    """No GPU here: the device's compute capability is the only CUDA call, and it is faked."""
    asked: list[torch.device] = []

    def fake_capability(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", fake_capability)
    cuda = torch.device("cuda", 1)
    assert resolve_precision("auto", cuda) == expected
    assert asked == [cuda]
    for name in ("fp32", "fp16", "bf16"):  # asked for, each precision stays as asked
        assert resolve_precision(name, cuda) == PRECISIONS[name]


def test_auto_precision_stays_fp32_on_cpu_and_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cuda(device: torch.device) -> tuple[int, int]:
        raise AssertionError(f"CUDA asked about {device}")

    monkeypatch.setattr(torch.cuda, "get_device_capability", no_cuda)
    for device in ("cpu", "mps"):
        assert resolve_precision("auto", torch.device(device)) == torch.float32
    with pytest.raises(UsageError, match="fp16 is not used on the CPU"):
        resolve_precision("fp16", torch.device("cpu"))
