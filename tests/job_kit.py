"""Cleaning up after tests that start detached jobs."""
from __future__ import annotations

from pathlib import Path


def kill_job(job_dir: Path) -> None:
    """Kill a detached job a test left running, never the test itself: a job run in-process (and a
    faked live job) records this process's pid, or its parent's, in job.json."""
    import os

    import psutil

    from state import jobs

    me = psutil.Process(os.getpid())
    p = jobs.process_of(Path(job_dir))
    if p is not None and p.pid not in {me.pid, *(q.pid for q in me.parents())}:
        jobs.kill(Path(job_dir))
