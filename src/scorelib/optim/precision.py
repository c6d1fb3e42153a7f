"""Mixed precision: autocast and the fp16 loss scaler, behind one small optimizer wrapper.

Mirrors fairseq's ``fairseq/optim/fp16_optimizer.py`` and ``FairseqOptimizer.backward``: the
task's ``train_step`` calls ``optimizer.backward(loss)``; the wrapper refuses a loss that is
not finite and, under ``--fp16``, scales it. A production extra: with float32 training it is
a plain AdamW.
"""
from __future__ import annotations

import contextlib
import logging
import math

import torch

from scorelib.errors import InvalidLossError, OptionError

logger = logging.getLogger(__name__)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def amp_dtype(fp16: bool, bf16: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--fp16`` / ``--bf16`` (``None``: float32)."""
    if fp16 and device.type != "cuda":
        raise OptionError("--fp16 needs a CUDA GPU; on the CPU use --bf16")
    return torch.float16 if fp16 else torch.bfloat16 if bf16 else None


def build_adamw(param_groups, lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel where this torch has it for ``device`` (one pass over all parameters)."""
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(param_groups, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError) as e:
            logger.info("fused AdamW is not available here (%s); using the default AdamW", e)
    return torch.optim.AdamW(param_groups, lr=lr)


class Optimizer:
    """AdamW plus, under fp16, a gradient scaler; ``backward`` checks the loss first.

    Args:
        optimizer (torch.optim.Optimizer): the wrapped optimizer.
        fp16 (bool): scale the loss (``torch.amp.GradScaler``) against float16 underflow.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, fp16: bool = False):
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss``; raise :class:`InvalidLossError` (before any gradient) when it is NaN or inf."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise InvalidLossError(f"loss is {value}")
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def unscale_(self) -> None:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)

    def step(self, grad_norm: torch.Tensor, num_updates: int) -> None:
        """Apply the gradients; under fp16 the scaler skips a step with inf/NaN gradients, else they stop training."""
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif not torch.isfinite(grad_norm):
            raise InvalidLossError(f"gradient norm is {float(grad_norm)} at update {num_updates + 1}")
        else:
            self.optimizer.step()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def scaler_state(self):
        return self.scaler.state_dict() if self.scaler else None

    def load_scaler_state(self, state) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)
