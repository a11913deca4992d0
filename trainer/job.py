"""What every job kind gets from run.py: its folder, params, event writer, and stop handling."""
from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from state import device as device_mod
from state import jobs
from state.events import EventWriter
from state.fsutil import read_json


class StopNow(Exception):
    """Raised when a second stop signal arrives: stop without finishing the step."""


@dataclass
class JobContext:
    job_dir: Path
    events: EventWriter
    params: dict = field(default_factory=dict)  # params.json (config.json for training runs)
    signals: int = 0
    end_fields: dict = field(default_factory=dict)  # merged into the job's `end` event by run.py
    listeners: list = field(default_factory=list)   # called with each event emitted (experiment trackers)
    _critical: str | None = None                    # what must not be interrupted right now (a save)
    _deferred: str | None = None                    # a second signal that arrived during it

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT once: finish the current unit of work and save. Twice: stop at once, except
        inside a `critical` block (a checkpoint or export being written), which finishes first."""
        def handler(signum: int, _frame: Any) -> None:
            self.signals += 1
            jobs.request(self.job_dir, "stop")
            if self.signals >= 2:
                if self._critical is not None:
                    self._deferred = f"signal {signum} received twice (while {self._critical}, which finished first)"
                    return
                raise StopNow(f"signal {signum} received twice")
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        jobs.mark_ready(self.job_dir)

    @contextmanager
    def critical(self, what: str) -> Iterator[None]:
        """Defer a second stop signal until the block ends, so a save is either whole or not started."""
        outer, self._critical = self._critical, what
        try:
            yield
        finally:
            self._critical = outer
        if outer is None and self._deferred is not None:
            reason, self._deferred = self._deferred, None
            raise StopNow(reason)

    def stop_requested(self) -> bool:
        return self.signals > 0 or jobs.flag_set(self.job_dir, "stop")

    def take_flag(self, flag: str) -> bool:
        """True once per request of `save_now` / `sample_now` (the flag is cleared)."""
        if jobs.flag_set(self.job_dir, flag):
            jobs.clear_flag(self.job_dir, flag)
            return True
        return False

    def wait_for(self, other: Path, poll_s: float = 0.5) -> bool:
        """Queue behind another job folder: True once it is no longer queued or running, False if
        this job was asked to stop first. Emits `queued` so the dashboard shows the wait."""
        self.emit("queued", after=Path(other).name)
        while jobs.status(other).active:
            if self.stop_requested():
                return False
            time.sleep(poll_s)
        return True

    @contextmanager
    def gpu_lease(self, device, poll_s: float = 1.0) -> Iterator[None]:
        """Hold `device`'s GPU lease for the block (DESIGN.md "One GPU, many jobs"); CPU and MPS need none.

        While another live job holds it, this job waits in phase `wait_gpu`, naming the holder. A stop
        request while waiting ends the job as stopped. A dead holder's lease is taken over, with a warning.
        """
        if getattr(device, "type", str(device)) != "cuda":
            yield
            return
        gpu = f"cuda:{device.index or 0}"
        kind = jobs.job_info(self.job_dir).get("kind", "job")
        shown = None
        while True:
            holder, taken_over = device_mod.try_acquire(gpu, self.job_dir, kind)
            if holder is None:
                break
            if self.stop_requested():
                raise StopNow(f"stopped while waiting for {gpu}, held by {holder.holder}")
            if shown != holder.holder:  # one event per holder, not one per poll
                shown = holder.holder
                self.phase("wait_gpu", 0, 1, None, gpu=gpu, holder=holder.holder, holder_since=holder.since)
            time.sleep(poll_s)
        if taken_over is not None:
            self.emit("warning", message=f"Took over {gpu} from {taken_over.holder}, whose process is gone.")
        if shown is not None:
            self.phase("wait_gpu", 1, 1, None, gpu=gpu)
        try:
            yield
        finally:
            _free_cached_gpu_memory()  # what this job's dead tensors left in torch's cache goes to the next holder
            device_mod.release(gpu)

    def emit(self, event_type: str, **fields: Any) -> dict:
        event = self.events.emit(event_type, **fields)
        for listen in list(self.listeners):
            listen(event)
        return event

    def phase(self, name: str, done: int, total: int | None, eta_s: float | None = None, **extra: Any) -> None:
        self.emit("phase", name=name, done=done, total=total, eta_s=eta_s, **extra)


def _free_cached_gpu_memory() -> None:
    torch = sys.modules.get("torch")  # only a job that imported torch can hold GPU memory
    if torch is not None and torch.cuda.is_available():
        import gc
        gc.collect()
        torch.cuda.empty_cache()


def load_params(job_dir: Path, name: str = "params.json") -> dict:
    return read_json(Path(job_dir) / name, default={}) or {}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
