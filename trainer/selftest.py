"""A torch-free job that walks the whole job lifecycle quickly.

It exists so the lifecycle (ready, step events, stop-and-save, kill, reconcile, resume) can be
checked on any machine in a second, and so a user can check that jobs launch at all before
committing a GPU hour ("Check job launching" in the dashboard).
"""
from __future__ import annotations

import time

from state.fsutil import write_json


def job_selftest(ctx, args) -> str:
    steps = int(ctx.params.get("steps", 20))
    interval = float(ctx.params.get("interval_s", 0.05))
    ckpt = ctx.job_dir / "checkpoints"
    state = (ckpt / "latest.json")
    start = 0
    if state.exists():
        import json
        start = json.loads(state.read_text())["step"]
        ctx.emit("resumed", step=start, tensors=0)
    ctx.emit("start", kind="selftest", total_steps=steps)
    t0 = time.time()
    for step in range(start + 1, steps + 1):
        time.sleep(interval)
        ctx.emit("step", step=step, loss=1.0 / step, elapsed_s=round(time.time() - t0, 3))
        if ctx.stop_requested() or ctx.take_flag("save_now"):
            ckpt.mkdir(exist_ok=True)
            write_json(state, {"step": step})
            ctx.emit("checkpoint", step=step, path=str(state))
            if ctx.stop_requested():
                return "stopped"
    return "completed"
