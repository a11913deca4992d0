"""The live view of one job: controls, status, timing, previews, charts and log, refreshed by a fragment.

Each refresh asks watchdog whether events.jsonl changed and, only then, reads the bytes appended
since the last refresh (EventTail) into the session's RunSeries. Nothing here touches the job
except the buttons: closing the tab or restarting the dashboard never affects it, and coming back
re-attaches. What the view knows comes from the event contract (DESIGN.md, "Events"): `start`,
`phase`, `step`, `checkpoint`, `sample` {step, path}, `validation`, `warning`, `error`, `end`.
"""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from state import jobs, settings
from state.events import EVENTS_FILE, EventTail
from state.listen import previews
from state.series import RunSeries, follow, timing
from state.train import runs
from state.watch import FolderWatch
from ui import charts, fmt, train_form

STATUS_BADGE = fmt.STATUS_BADGE
PHASE_WORDS = {"wait_gpu": "waiting for the GPU", "load": "loading the model", "preprocess": "preprocessing audio",
               "train": "training", "validate": "validating", "sample": "rendering a preview",
               "save": "saving the adapter"}
PREVIEWS_SHOWN = 3
REFRESH_S = 2


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


def run_timing(run_dir: Path, series: RunSeries, status: jobs.JobStatus):
    info = jobs.job_info(run_dir)
    return timing(series, status.started_at, time.time(), status.active, queues="--after" in (info.get("argv") or []))


# ---- the Train page's panel: controls on top, refreshing itself while the run is active ---------

def panel(run_dir: Path, key: str) -> None:
    """One run with its controls. While it is queued or running a fragment redraws it every few
    seconds; when it ends, the whole page is redrawn once (so Start, Resume and the run list follow)."""
    if jobs.status(run_dir).active:
        _live_panel(run_dir, key)
    else:
        _panel(run_dir, key)


@st.fragment(run_every=REFRESH_S)
def _live_panel(run_dir: Path, key: str) -> None:
    if not _panel(run_dir, key).active:
        st.rerun()


def _panel(run_dir: Path, key: str) -> jobs.JobStatus:
    series = attach(run_dir)
    status = jobs.reconcile(run_dir)
    controls(run_dir, status, series, key)
    view(run_dir, key, series, status)
    return status


def controls(run_dir: Path, status: jobs.JobStatus, series: RunSeries, key: str) -> None:
    """Stop / save / sample while it runs, resume when it can; each click is acknowledged until done."""
    b = st.columns([1, 1, 1, 2])
    if status.active:
        queued = status.status == "queued"
        wait = "The run is still waiting in the queue." if queued else None
        if b[0].button("⏹ Stop & save", key=f"{key}_stop"):
            _requested(run_dir, "stop", key)
            st.toast(jobs.stop(run_dir))
        if b[1].button("💾 Save now", key=f"{key}_save_now", disabled=queued, help=wait):
            jobs.request(run_dir, "save_now")
            _requested(run_dir, "save_now", key)
            st.toast("Saving a checkpoint after the current step.")
        if b[2].button("🎧 Sample now", key=f"{key}_sample_now", disabled=queued, help=wait):
            jobs.request(run_dir, "sample_now")
            _requested(run_dir, "sample_now", key)
            st.toast("Rendering a preview from the current adapter; it appears in this view.")
    elif status.status in ("stopped", "died", "failed") and (ckpts := runs.checkpoints(run_dir)):
        pick = b[0].selectbox("Checkpoint", [p.name for p in ckpts][::-1], key=f"{key}_resume_pick",
                              label_visibility="collapsed")
        if b[1].button("▶ Resume", key=f"{key}_resume", type="primary"):
            runs.start_run({}, [], run_id=run_dir.name, resume=pick)
            st.toast(f"Resuming {run_dir.name} from {pick}.")
            st.rerun()
    if b[3].button("New run from these settings", key=f"{key}_clone",
                   help="Copies this run's settings into the New run tab, where you can change any of them."):
        train_form.start_from_run(run_dir)
        st.rerun()
    for line in acknowledgements(run_dir, series, status, key):
        st.caption(line)


def _requested(run_dir: Path, flag: str, key: str) -> None:
    st.session_state.setdefault(f"{key}_asked", {}).setdefault(run_dir.name, {})[flag] = time.time()


def acknowledgements(run_dir: Path, series: RunSeries, status: jobs.JobStatus, key: str) -> list[str]:
    """What became of this session's clicks, in words: waiting for the step, working, or done."""
    asked = st.session_state.get(f"{key}_asked", {}).get(run_dir.name, {})
    out = []
    if (t := asked.get("stop")) and status.active:
        out.append(f"⏹ Stop requested at {_clock(t)}: the run finishes the current step, saves a checkpoint "
                   "and stops.")
    if t := asked.get("save_now"):
        done = next((c for c in reversed(series.checkpoints) if c.get("t", 0) >= t - 1
                     and c.get("reason") == "save_now"), None)
        if done:
            out.append(f"💾 Saved checkpoint step-{int(done.get('step', 0)):06d} at {_clock(done['t'])}.")
        elif jobs.flag_set(run_dir, "save_now"):
            out.append(f"💾 Checkpoint requested at {_clock(t)}: saved when the current step ends.")
        elif status.active:
            out.append("💾 Saving a checkpoint…")
    if t := asked.get("sample_now"):
        done = next((e for e in reversed(series.sample_events) if e.get("t", 0) >= t - 1), None)
        if done:
            out.append(f"🎧 Preview of step {done.get('step')} is ready (below, under Previews).")
        elif jobs.flag_set(run_dir, "sample_now"):
            out.append(f"🎧 Preview requested at {_clock(t)}: rendering starts when the current step ends.")
        elif status.active:
            out.append("🎧 Rendering a preview of the current adapter; it appears below when it is ready.")
    return out


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


# ---- the view itself (Train and Runs pages) -----------------------------------------------------

def render(run_dir: Path, key: str) -> str:
    """Draw the view once without controls (Runs page); returns the job status."""
    status = jobs.reconcile(run_dir)
    # the Runs page has a Samples tab, and its own demo-model warning above the tabs
    view(run_dir, key, attach(run_dir), status, with_previews=False, demo_caption=False)
    return status.status


def view(run_dir: Path, key: str, series: RunSeries, status: jobs.JobStatus, with_previews: bool = True,
         demo_caption: bool = True) -> None:
    start = series.start or {}
    last = _numbers(series.last_step or {})  # a hand-edited events file may hold anything
    phase = series.phase or {}
    total = _number(start.get("total_steps"))
    total = int(total) if total else None
    tm = run_timing(run_dir, series, status)
    training = status.active and phase.get("name") == "train"

    model = str(runs.read_config(run_dir)[0].get("model_id", ""))
    if demo_caption and settings.is_demo(model):
        st.caption("Tiny demo model (random weights): this run exercises the workflow; its adapter makes noise.")
    c = st.columns(4)
    c[0].metric("Status", STATUS_BADGE.get(status.status, status.status))
    c[1].metric("Step", f"{int(last.get('step', 0))}" + (f" / {total}" if total else ""))
    c[2].metric("ETA", fmt.duration(last.get("eta_s")) if training else "–",
                help="Time left for the training steps, from the measured step time.")
    c[3].metric("Run time", fmt.duration(tm.run_s),
                help="Time the job spent working (loading, preprocessing, training, saving), summed over "
                     "resumes. Time waiting in the queue is not counted.")
    c = st.columns(4)
    precision = start.get("precision") or start.get("dtype")
    c[0].metric("Device", " · ".join(str(p) for p in (start.get("device"), precision) if p) or "–")
    c[1].metric("Samples/s", f"{last['samples_per_s']:.2f}" if last.get("samples_per_s") else "–")
    c[2].metric("Queued", fmt.duration(tm.queued_s) if tm.queued_s is not None else "–",
                help="Time this launch waited for the run before it to end.")
    best = min((v for v in series.validations if isinstance(v.get("loss"), (int, float))),
               key=lambda v: v["loss"], default=None)
    if best:
        c[3].metric("Best validation loss", f"{best['loss']:.4f}", help=f"at step {best.get('step')}")
    else:
        c[3].metric("Last loss", f"{series.last_loss:.4f}" if series.last_loss is not None else "–")

    _progress(status, series, phase, last, total)
    for e in series.errors[-3:]:
        st.error(fmt.with_hint(f"{e.get('message')}", e.get("hint")))
    if status.status in ("died", "damaged"):
        st.error(status.detail or "The job's process is gone without saying it finished.")
    for w in series.warnings[-3:]:
        st.warning(w.get("message"))

    if with_previews:
        preview_list(run_dir)
    if series.steps:
        log_y = st.toggle("Log scale", key=f"{key}_log")
        st.plotly_chart(charts.loss_figure(series, log_y=log_y), key=f"{key}_loss")
        left, right = st.columns(2)
        left.plotly_chart(charts.lr_figure(series), key=f"{key}_lr")
        right.plotly_chart(charts.memory_figure(series), key=f"{key}_mem")
    elif status.active:
        st.info("Waiting for the first training step…")
    with st.expander("Log (last lines)"):
        lines, hidden = jobs.log_view(run_dir, 30)
        st.code("\n".join(lines) or "(empty)", language=None)
        note = f"{hidden} library notice(s) a user cannot act on are left out here. " if hidden else ""
        st.caption(f"{note}Full log: `{run_dir / jobs.LOG_FILE}`")


def _progress(status: jobs.JobStatus, series: RunSeries, phase: dict, last: dict, total: int | None) -> None:
    if status.status == "queued":
        q = (status.last_event or {}).get("after")
        st.info(f"Queued: starts by itself when `{q or 'the run before it'}` ends.")
        return
    if not status.active:
        return
    name = phase.get("name")
    if name and name != "train":
        done, tot = _number(phase.get("done")) or 0, _number(phase.get("total")) or 0
        frac = min(1.0, done / tot) if tot else 0.0
        eta = f" · ETA {fmt.duration(_number(phase.get('eta_s')))}" if _number(phase.get("eta_s")) is not None else ""
        st.progress(frac, text=f"{PHASE_WORDS.get(name, name)}: {done:g}/{tot or '?'}{eta}")
    elif total:
        st.progress(min(1.0, last.get("step", 0) / total),
                    text=f"training · ETA {fmt.duration(last.get('eta_s'))}")


def preview_list(run_dir: Path) -> None:
    """The newest previews with players, as they arrive (the `sample` events and their files)."""
    found = previews.step_samples(run_dir)
    if not found:
        return
    st.markdown(f"**Previews** ({len(found)}; the newest {min(len(found), PREVIEWS_SHOWN)} here, all under "
                "Runs → Samples)")
    cols = st.columns(PREVIEWS_SHOWN)
    for col, (step, wav) in zip(cols, found[::-1][:PREVIEWS_SHOWN]):
        with col:
            st.caption(f"step {step}")
            st.audio(str(wav), format="audio/wav")


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def _numbers(event: dict) -> dict:
    return {k: _number(v) for k, v in event.items() if _number(v) is not None}
