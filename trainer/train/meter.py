"""Step telemetry: throttled `step` events that still account for every step's loss (DESIGN.md, "Events").

Each event's `loss` is the mean over all steps since the previous event, so throttling to a few
events per second drops no loss information. The ETA uses a moving average of step time, so a
slow first step (allocation, warm-up) does not dominate it.
"""
from __future__ import annotations

import os
import time

import psutil
import torch

# Seconds between step events; an environment override lets tests see every step.
EVENT_INTERVAL_S = float(os.environ.get("ACELORA_STEP_EVENT_INTERVAL", "0.25"))


class StepMeter:
    def __init__(self, total_steps: int, start_step: int, device: torch.device, ema: float = 0.1):
        self.total_steps, self.device, self.ema = total_steps, device, ema
        self.t0 = self.t_step = self.t_event = time.time()
        self.loss_sum, self.loss_n, self.n, self.samples = 0.0, 0, 0, 0
        self.step_time: float | None = None
        self.first_step = start_step
        self._proc = psutil.Process()

    def add(self, loss: float | None, samples: int) -> None:
        """One optimizer step; `loss` None for a step whose loss was not finite (an fp16 step the scaler skipped)."""
        now = time.time()
        dt, self.t_step = now - self.t_step, now
        self.step_time = dt if self.step_time is None else (1 - self.ema) * self.step_time + self.ema * dt
        if loss is not None:
            self.loss_sum += loss
            self.loss_n += 1
        self.n += 1
        self.samples += samples

    def due(self) -> bool:
        return self.n > 0 and time.time() - self.t_event >= EVENT_INTERVAL_S

    def report(self, step: int, epoch: float, lr: float, grad_norm: float) -> dict:
        """The `step` event's fields; resets the window."""
        now = time.time()
        window = max(now - self.t_event, 1e-9)
        ev = {
            "step": step, "epoch": round(epoch, 4), "loss": self.loss_sum / self.loss_n if self.loss_n else None, "lr": lr,
            "grad_norm": grad_norm, "samples_per_s": round(self.samples / window, 3),
            "elapsed_s": round(now - self.t0, 3),
            "eta_s": round(self.step_time * (self.total_steps - step), 1) if self.step_time else None,
            "steps_in_window": self.n, **self.memory(),
        }
        self.t_event, self.loss_sum, self.loss_n, self.n, self.samples = now, 0.0, 0, 0, 0
        return ev

    def memory(self) -> dict:
        mb = 2 ** 20
        out = {"gpu_mem_alloc_mb": None, "gpu_mem_reserved_mb": None, "gpu_mem_peak_mb": None,
               "rss_mb": round(self._proc.memory_info().rss / mb, 1)}
        if self.device.type == "cuda":
            out.update(gpu_mem_alloc_mb=round(torch.cuda.memory_allocated(self.device) / mb, 1),
                       gpu_mem_reserved_mb=round(torch.cuda.memory_reserved(self.device) / mb, 1),
                       gpu_mem_peak_mb=round(torch.cuda.max_memory_allocated(self.device) / mb, 1))
        return out
