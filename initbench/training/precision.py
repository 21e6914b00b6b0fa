"""How training steps compute: float32, or mixed precision on CUDA."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MixedPrecision:
    """How the training steps of :func:`optimize` compute: ``dtype`` is the autocast type of
    the forward pass and loss (``None``: float32 throughout), and ``scaler`` the gradient
    scaler that float16 needs (bfloat16 has float32's exponent range and needs none).

    Micikevicius et al. 2018, "Mixed Precision Training"; PyTorch's ``torch.autocast`` and
    ``torch.amp.GradScaler``. Weights and optimizer state stay float32.
    """

    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @property
    def name(self) -> str:
        """``float32``, ``bfloat16 autocast`` or ``float16 autocast + grad scaler``."""
        if self.dtype is None:
            return "float32"
        return f"{str(self.dtype).removeprefix('torch.')} autocast" + (
            " + grad scaler" if self.scaler is not None else ""
        )

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context for one forward pass and loss on ``device``."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass and optimizer step, through the scaler when there is one (a step
        whose scaled gradients overflowed is skipped and the scale lowered)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def mixed_precision(device: torch.device) -> MixedPrecision:
    """The training precision for ``device``: float32 on CPU (deterministic, and CPUs
    without native bfloat16 run it slower than float32); on CUDA bfloat16 autocast where
    the GPU has bfloat16 units (compute capability 8.0 and later: Ampere, Hopper, ...),
    else float16 autocast with a gradient scaler (``torch.cuda.is_bf16_supported`` is
    true on older GPUs too, where bfloat16 is emulated and slow)."""
    if device.type != "cuda":
        return MixedPrecision()
    if torch.cuda.get_device_capability(device)[0] >= 8:
        return MixedPrecision(torch.bfloat16)
    return MixedPrecision(torch.float16, torch.amp.GradScaler("cuda"))
