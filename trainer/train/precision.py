"""Mixed precision for the training step: which dtype the frozen base runs in, autocast, loss scaling.

    bf16 GPUs (Ampere and newer)  bf16 base, fp32 LoRA master weights, bf16 autocast, no scaler
    fp16 GPUs (T4, V100)          fp16 base, fp32 LoRA master weights, fp16 autocast + GradScaler
    fp32                          everything fp32, no autocast

fp16 has bf16's precision but not its range: small LoRA gradients underflow to zero unless the loss is
scaled up before backward (`torch.amp.GradScaler`). The scaler skips a step whose gradients came out
inf/NaN and halves its scale; those skipped steps are counted and reported in step events, never
silently dropped (ACESTEP.md §3, precision). The same path runs on CPU (`device: "cpu:fp16"`), which is
how the tests prove it trains.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass
class Precision:
    device: torch.device
    base: torch.dtype                 # dtype of the frozen weights
    scaler: torch.amp.GradScaler | None
    skipped_steps: int = 0            # optimizer steps the scaler skipped (inf/NaN gradients), whole run

    @classmethod
    def for_device(cls, device: torch.device, base: torch.dtype) -> "Precision":
        scaler = torch.amp.GradScaler(device.type) if base == torch.float16 else None
        return cls(device, base, scaler)

    @property
    def label(self) -> str:
        """What the start event and the sidebar say, e.g. "fp16 + loss scaling"."""
        name = DTYPE_NAMES[self.base]
        return f"{name} + loss scaling" if self.scaler is not None else name

    def autocast(self):
        if self.base == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.base)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer, params: list, max_grad_norm: float, loss: torch.Tensor) -> tuple[float, float, bool]:
        """Unscale, clip, step: (loss, grad norm, applied). The loss and the norm come back to the host
        in one transfer, the step's only sync beyond the scaler's own inf check.

        Without a scaler a non-finite loss or norm is never applied (the caller fails the run with the
        last good checkpoint named); with one, the scaler skips such a step and lowers its scale.
        """
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm or math.inf)
        loss_val, norm_val = torch.stack([loss.detach().float(), norm.float()]).tolist()
        if self.scaler is None:
            applied = math.isfinite(loss_val) and math.isfinite(norm_val)
            if applied:
                optimizer.step()
            return loss_val, norm_val, applied
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)  # skipped when the unscaled gradients hold inf/NaN
        self.scaler.update()
        applied = self.scaler.get_scale() >= before  # the scale drops exactly when the step was skipped
        self.skipped_steps += not applied
        return loss_val, norm_val, applied

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict | None) -> None:
        if not state:
            return
        self.skipped_steps = int(state.get("skipped_steps", 0))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
