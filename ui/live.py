"""The live view of one job: status, timing, charts and log, refreshed by a fragment.

Each refresh asks watchdog whether events.jsonl changed and, only then, reads the bytes appended
since the last refresh (EventTail) into the session's RunSeries. Nothing here touches the job:
closing the tab or restarting the dashboard never affects it, and coming back re-attaches.
"""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from state import jobs
from state.events import EVENTS_FILE, EventTail
from state.series import RunSeries, follow
from state.watch import FolderWatch
from ui import charts, fmt

STATUS_BADGE = {"running": "🟢 running", "queued": "⏳ queued", "completed": "✅ completed",
                "stopped": "⏸️ stopped", "failed": "❌ failed", "died": "💀 died", "damaged": "🩹 damaged",
                "unknown": "❔ unknown"}


@st.cache_resource(show_spinner=False, max_entries=32)
def _watch(run_dir: str) -> FolderWatch:
    return FolderWatch(Path(run_dir), suffixes=(EVENTS_FILE,), recursive=False)


def attach(run_dir: Path) -> RunSeries:
    """This session's series for the run, brought up to date with only the new bytes."""
    key = f"live_{run_dir}"
    watch = _watch(str(run_dir))
    state = st.session_state.get(key)
    if state is None:
        state = {"tail": EventTail(run_dir / EVENTS_FILE), "series": RunSeries(), "gen": -1}
        st.session_state[key] = state
    if watch.generation != state["gen"] or not watch.alive:
        state["gen"] = watch.generation
        if state["tail"].check_reset():  # truncated or replaced: rebuild from byte 0
            state["series"] = RunSeries()
        follow(state["tail"], state["series"])
    return state["series"]


def render(run_dir: Path, key: str) -> str:
    """Draw the panel once; returns the job status so callers can decide what buttons to show."""
    series = attach(run_dir)
    st_ = jobs.reconcile(run_dir)
    start = series.start or {}
    last = _numbers(series.last_step or {})  # a hand-edited events file may hold anything
    phase = series.phase or {}
    now = time.time()
    started = st_.started_at or _number(start.get("t"))
    elapsed = ((_number((series.end or {}).get("t")) or now) - started) if started else None
    total = _number(start.get("total_steps"))
    total = int(total) if total else None

    c = st.columns(3)
    c[0].metric("Status", STATUS_BADGE.get(st_.status, st_.status))
    c[1].metric("Step", f"{int(last.get('step', 0))}" + (f" / {total}" if total else ""))
    c[2].metric("ETA (run)", fmt.duration(last.get("eta_s")) if st_.active else "–")
    c = st.columns(3)
    c[0].metric("Device", str(start.get("device", "–")))
    c[1].metric("Elapsed", fmt.duration(elapsed))
    c[2].metric("Samples/s", f"{last['samples_per_s']:.2f}" if last.get("samples_per_s") else "–")
    if st_.active and phase and phase.get("name") != "train":
        done, tot = _number(phase.get("done")) or 0, _number(phase.get("total")) or 0
        frac = min(1.0, done / tot) if tot else 0.0
        eta = fmt.duration(_number(phase.get("eta_s")))
        st.progress(frac, text=f"{phase.get('name')}: {done:g}/{tot or '?'} · ETA {eta}")
    elif st_.active and total:
        st.progress(min(1.0, last.get("step", 0) / total), text=f"training · ETA {fmt.duration(last.get('eta_s'))}")

    for e in series.errors[-3:]:
        st.error(fmt.with_hint(f"{e.get('message')}", e.get("hint")))
    if st_.status in ("died", "damaged"):
        st.error(st_.detail or "The job's process is gone without saying it finished.")
    for w in series.warnings[-3:]:
        st.warning(w.get("message"))

    if series.steps:
        log_y = st.toggle("Log scale", key=f"{key}_log")
        st.plotly_chart(charts.loss_figure(series, log_y=log_y), key=f"{key}_loss")
        left, right = st.columns(2)
        left.plotly_chart(charts.lr_figure(series), key=f"{key}_lr")
        right.plotly_chart(charts.memory_figure(series), key=f"{key}_mem")
    elif st_.active:
        st.info("Waiting for the first training step…")
    with st.expander("Log (last lines)"):
        st.code("\n".join(jobs.log_tail(run_dir, 30)) or "(empty)", language=None)
    return st_.status


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def _numbers(event: dict) -> dict:
    return {k: _number(v) for k, v in event.items() if _number(v) is not None}
