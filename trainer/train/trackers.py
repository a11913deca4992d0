"""TensorBoard and trackio logging, fed the same `step` and `validation` events as events.jsonl.

A tracker listens to the job's events (JobContext.listeners), so it sees exactly the numbers the
dashboard shows, throttling included, and the loop knows nothing about it. Each is an optional
package, imported only when `report_to` names it; a missing one stops the run before anything
loads, naming the pip package (state/train/trackers.py). A tracker that fails while logging is
dropped with a warning: it must never cost a training run.
"""
from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from state.train import trackers as where
from state.train.config import ConfigError, TrainConfig

# step event field -> scalar tag (TensorBoard groups tags by the part before the slash)
STEP_SCALARS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm", "epoch": "train/epoch",
                "samples_per_s": "speed/samples_per_s", "gpu_mem_peak_mb": "memory/gpu_peak_mb",
                "rss_mb": "memory/rss_mb"}


class TrackerMissing(ConfigError):
    """report_to names a tracker whose package is not installed."""


def scalars(event: dict) -> tuple[int, dict[str, float]] | None:
    """(step, {tag: value}) from a step or validation event; None for every other event."""
    if event.get("type") == "step":
        values = {tag: event.get(k) for k, tag in STEP_SCALARS.items()}
    elif event.get("type") == "validation":
        values = {"validation/loss": event.get("loss"), "validation/best_loss": event.get("best_loss")}
        for t, loss in zip(event.get("timesteps") or [], event.get("per_timestep") or []):
            values[f"validation_per_timestep/t={t:.3f}"] = loss
    else:
        return None
    return int(event["step"]), {k: float(v) for k, v in values.items()
                                if isinstance(v, (int, float)) and math.isfinite(v)}


class TensorBoard:
    name = "tensorboard"

    def __init__(self, run_dir: Path, cfg: TrainConfig):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrackerMissing(where.missing_message(self.name)) from None
        self.writer = SummaryWriter(log_dir=str(where.tensorboard_dir(run_dir)))
        self.writer.add_text("config", "```json\n" + json.dumps(cfg.to_dict(), indent=2) + "\n```")

    def log(self, step: int, values: dict[str, float]) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()  # events arrive a few times a second at most: flush so TensorBoard is live

    def close(self) -> None:
        self.writer.close()


class Trackio:
    name = "trackio"

    def __init__(self, run_dir: Path, cfg: TrainConfig):
        # trackio reads its folder once, on import; a TRACKIO_DIR the user set wins (the Runs page reads it too)
        os.environ.setdefault("TRACKIO_DIR", str(where.trackio_dir()))
        try:
            import trackio
        except ImportError:
            raise TrackerMissing(where.missing_message(self.name)) from None
        self.trackio = trackio
        # the run folder's name is the trackio run: a resumed run continues it
        trackio.init(project=where.TRACKIO_PROJECT, name=Path(run_dir).name, config=cfg.to_dict(),
                     resume="allow", auto_log_gpu=False, auto_log_cpu=False, embed=False)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.trackio.log(values, step=step)

    def close(self) -> None:
        self.trackio.finish()


KINDS = {"tensorboard": TensorBoard, "trackio": Trackio}


@contextmanager
def trackers(ctx, cfg: TrainConfig) -> Iterator[list]:
    """Open the trackers `cfg.report_to` names and feed them the job's events until the block ends."""
    opened = []
    try:
        for name in cfg.report_to:
            opened.append(KINDS[name](ctx.job_dir, cfg))
    except BaseException:
        _close(ctx, opened)
        raise

    def listen(event: dict) -> None:
        got = scalars(event)
        if got is None:
            return
        for t in list(opened):
            try:
                t.log(*got)
            except Exception as exc:  # noqa: BLE001 - a logging failure must not end the run
                opened.remove(t)
                ctx.emit("warning", message=f"Stopped logging to {t.name}: {type(exc).__name__}: {exc}. "
                         "Training goes on; events.jsonl has every number.")

    ctx.listeners.append(listen)
    try:
        yield opened
    finally:
        ctx.listeners.remove(listen)
        _close(ctx, opened)


def _close(ctx, opened: list) -> None:
    for t in opened:
        try:
            t.close()
        except Exception as exc:  # noqa: BLE001
            ctx.emit("warning", message=f"{t.name} did not close cleanly: {type(exc).__name__}: {exc}.")
