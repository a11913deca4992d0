"""fp16 + loss scaling, the precision of T4/V100 Spaces, proven on the CPU (CPU autocast + GradScaler)."""
from __future__ import annotations

import math

import torch

from trainer.train.precision import Precision

from train_kit import end_of, read_events, structured_latents


def test_fp16_with_loss_scaling_trains_the_tiny_model(train_kit, monkeypatch):
    structured_latents(monkeypatch)
    job = train_kit.run_dir("fp16", max_steps=60, learning_rate=3e-3, rank=8, alpha=8.0, seed=1, device="cpu:fp16")
    assert train_kit.run(job) == 0, read_events(job, "error")
    start = read_events(job, "start")[0]
    assert start["dtype"] == "float16" and start["precision"] == "fp16 + loss scaling"
    steps = read_events(job, "step")
    curve = {s["step"]: s["loss"] for s in steps if s["loss"] is not None}
    assert all(math.isfinite(v) for v in curve.values())
    first = sum(curve[s] for s in range(1, 6) if s in curve) / 5
    last = sum(curve[s] for s in range(56, 61) if s in curve) / 5
    assert last < 0.7 * first, (first, last)
    assert "skipped_steps" in steps[-1] and steps[-1]["skipped_steps"] < 10
    assert end_of(job)["status"] == "completed"
    best = job / "checkpoints" / "step-000060"  # the end's validation is the best: kept as a checkpoint
    saved = torch.load(best / "training_state.pt", weights_only=True)
    assert saved["precision"]["scaler"]["scale"] > 0  # the scaler's state is saved for an exact resume


def test_a_skipped_step_is_counted_not_applied():
    """An inf gradient under the scaler: the optimizer does not move, the scale halves, the skip is counted."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    p = Precision.for_device(torch.device("cpu"), torch.float16)
    loss = (w * torch.tensor([1.0, float("inf"), 1.0])).sum()
    p.backward(loss)
    scale = p.scaler.get_scale()
    _, _, applied = p.step(opt, [w], 1.0, loss)
    assert applied is False and p.skipped_steps == 1 and p.scaler.get_scale() < scale
    assert torch.equal(w.detach(), torch.ones(3))
    opt.zero_grad()
    loss = (w * 2).sum()
    p.backward(loss)
    loss_val, norm, applied = p.step(opt, [w], 1.0, loss)
    assert applied and loss_val == 6.0 and not torch.equal(w.detach(), torch.ones(3))
    assert Precision.for_device(torch.device("cpu"), torch.bfloat16).label == "bf16"
    assert Precision.for_device(torch.device("cpu"), torch.float32).scaler is None
