"""What every job kind gets from run.py: its folder, params, event writer, and stop handling."""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT once: finish the current unit of work and save. Twice: stop at once."""
        def handler(signum: int, _frame: Any) -> None:
            self.signals += 1
            jobs.request(self.job_dir, "stop")
            if self.signals >= 2:
                raise StopNow(f"signal {signum} received twice")
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        jobs.mark_ready(self.job_dir)

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

    def emit(self, event_type: str, **fields: Any) -> dict:
        return self.events.emit(event_type, **fields)

    def phase(self, name: str, done: int, total: int | None, eta_s: float | None = None, **extra: Any) -> None:
        self.emit("phase", name=name, done=done, total=total, eta_s=eta_s, **extra)


def load_params(job_dir: Path, name: str = "params.json") -> dict:
    return read_json(Path(job_dir) / name, default={}) or {}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
