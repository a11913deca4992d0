"""Whatever waits on a job redraws the page itself when the job's state changes.

A page drawn while a job runs shows "running…" or a disabled button; without a poll it stays so
until the user clicks something (the demo model built in 23 s, Start stayed disabled for minutes).
`until_done` draws its note inside a small fragment that checks the job every second and reruns
the whole page once the job is no longer queued or running.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import streamlit as st

from state import jobs


def until_done(job_dir: Path, draw: Callable[[], None], every_s: float = 1.0) -> None:
    """Call `draw` now and every `every_s` seconds while the job is active; rerun the page when it ends."""

    @st.fragment(run_every=every_s)
    def _poll() -> None:
        if not jobs.reconcile(job_dir).active:
            st.rerun()
        draw()

    _poll()


def until_true(done: Callable[[], bool], draw: Callable[[], None], every_s: float = 1.0) -> None:
    """The same for a condition that is not a job's status (a file appearing)."""

    @st.fragment(run_every=every_s)
    def _poll() -> None:
        if done():
            st.rerun()
        draw()

    _poll()
