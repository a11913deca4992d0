"""The Train page's memory/time line: starts the `estimate` job when no measurement is cached and
shows "measuring…" until it lands, then reruns the page so the preflight checks use it."""
from __future__ import annotations

import streamlit as st

from state.train import estimates


def line(pf) -> None:
    """One caption: the measured estimate, or "measuring…" while the job runs (when there can be no
    estimate, the preflight checks above already say why)."""
    if pf.estimate in ("missing", "measuring") and pf.request is not None:
        estimates.start(pf.request)  # no-op while it runs; waits its turn behind another estimate
        _wait(pf.request)
    elif pf.estimate == "ready":
        st.caption(pf.estimate_text)


@st.fragment(run_every=2)
def _wait(request: dict) -> None:
    st.caption("GPU memory and time: measuring… (one fake-tensor training step at the real size, about a minute)")
    if estimates.read(request) is not None:
        st.rerun()
    job = estimates.job_for(request)
    if job is None or not job.active:
        estimates.start(request)  # the estimate ahead of it finished: this one's turn
        if job is not None and job.status in ("failed", "died"):
            st.rerun()
