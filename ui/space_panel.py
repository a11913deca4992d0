"""The sidebar's Hugging Face Space panel: hardware, price, running cost, storage and idle warnings,
and the cost controls (pause when the queue ends, sleep time, Hub sync). Shown only on a Space.

Tokens: the HF_TOKEN secret when the Space has one, else a password field whose value lives only
in this browser session and is handed to jobs through their environment (state.cloud.hub / state.cloud.space).
"""
from __future__ import annotations

import os
import time

import streamlit as st

from state.cloud import hub, space
from ui import fmt, hf_token


def _money(x: float | None) -> str:
    return "price unknown" if x is None else f"${x:,.2f}"


def _duration(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m} min"


def panel() -> None:
    if not space.on_space():
        return
    s = space.status()
    with st.sidebar:
        st.divider()
        st.caption("Hugging Face Space")
        _header(s)
        if not s.persistent:
            st.error("**No persistent storage.** /data is not mounted, so datasets, runs and models live on "
                     "the container disk and are **deleted when the Space restarts, sleeps, pauses or "
                     "rebuilds**. Attach a storage bucket at /data (Space settings), or turn on Hub sync below.")
        _idle_warning(s)
        _auto_arm(s)
        with st.expander("Cost control"):
            _controls(s)


def _header(s: space.SpaceStatus) -> None:
    price = f"{_money(s.price)}/h" if s.price is not None else "price unknown (set ACELORA_PRICE_PER_HOUR)"
    st.markdown(f"**{s.space_id}** · `{s.hardware or 'unknown hardware'}` · {price}")
    st.caption(f"Prices: {space.PRICE_SOURCE}. Billed per minute while the Space runs.")
    run = space.current_run()
    if run is not None and run.started_at:
        st.markdown(f"This run (`{run.job_id}`): **{_money(space.run_cost(run, s.price))}** "
                    f"over {_duration(time.time() - run.started_at)}")
    started = space.container_started_at()
    if started:
        st.caption(f"Since the Space started ({_duration(time.time() - started)}): "
                   f"{_money(space.cost(time.time() - started, s.price))}")


def _idle_warning(s: space.SpaceStatus) -> None:
    idle = space.idle_minutes()
    limit = space.prefs()["idle_warn_min"]
    if idle is not None and space.is_gpu(s.hardware) and idle >= limit:
        st.warning(f"**GPU idle for {int(idle)} min** with no job running: this still costs "
                   f"{_money(s.price)}/h. Start a run, or pause the Space (Cost control below, or the "
                   "Space's Settings page).")


def _auto_arm(s: space.SpaceStatus) -> None:
    """With the HF_TOKEN secret, the saved preferences act by themselves when work is running."""
    secret = os.environ.get("HF_TOKEN")
    if not secret or not space.work_jobs():
        return
    p = space.prefs()
    if p["pause_when_done"] and not space.watchers():
        space.arm_pause(secret)
    run = space.current_run()
    if run is not None and not s.persistent and p["hub_sync_repo"] and hub.sync_job_for(run.job_id) is None:
        hub.start_sync(run.job_id, p["hub_sync_repo"], secret)


def _controls(s: space.SpaceStatus) -> None:
    p = space.prefs()
    hf_token.field("space_token", env_note="Using the Space's HF_TOKEN secret.")
    tok = hf_token.token()

    # -- pause when the queue ends
    armed = space.watchers()
    if armed:
        st.success("Armed: the Space pauses 2 min after the last job ends (even with this tab closed).")
        if st.button("Disarm", key="space_disarm"):
            space.disarm_pause()
            space.save_prefs(pause_when_done=False)
            st.rerun()
    elif st.button("Pause the Space when the queue ends", key="space_arm", disabled=not tok,
                   help="Starts a small background job that pauses this Space once no job has run for 2 min. "
                        "A paused Space is not billed; restart it from its page."):
        _act(lambda: space.arm_pause(tok), "Armed.")
    always = st.checkbox("Always arm when a job starts (needs the HF_TOKEN secret)",
                         value=p["pause_when_done"], key="space_always_pause")
    if always != p["pause_when_done"]:
        space.save_prefs(pause_when_done=always)

    # -- sleep time
    labels = list(space.SLEEP_CHOICES_S)
    current = next((k for k, v in space.SLEEP_CHOICES_S.items() if v == p["sleep_time_s"]), "1 hour")
    choice = st.selectbox("Sleep after no visitors for", labels, index=labels.index(current), key="space_sleep")
    if st.button("Apply sleep time", key="space_sleep_apply", disabled=not tok):
        seconds = space.SLEEP_CHOICES_S[choice]
        _act(lambda: (hub.set_sleep_time(s.space_id, seconds, tok), space.save_prefs(sleep_time_s=seconds))[0],
             None)

    # -- Hub sync of the running run
    repo = st.text_input("Hub sync repository (private)", value=p["hub_sync_repo"], key="space_sync_repo",
                         placeholder="my-acelora-sync")
    if repo != p["hub_sync_repo"]:
        space.save_prefs(hub_sync_repo=repo)
    run = space.current_run()
    if run is not None:
        if hub.sync_job_for(run.job_id):
            st.caption(f"`{run.job_id}` is being synced to the Hub every 10 min.")
        elif st.button("Sync the running run to the Hub", key="space_sync_now", disabled=not (tok and repo)):
            _act(lambda: hub.start_sync(run.job_id, repo, tok), "Hub sync started.")


def _act(fn, ok: str | None) -> None:
    try:
        result = fn()
    except hub.HubError as exc:
        st.error(fmt.with_hint(str(exc), exc.hint))
        return
    except (ValueError, RuntimeError) as exc:
        st.error(str(exc))
        return
    st.success(ok or str(result))
