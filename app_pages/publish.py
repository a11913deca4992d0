"""Publish page: put a finished run on the Hugging Face Hub; restore a run saved by Hub sync."""
from __future__ import annotations

import streamlit as st

from state import jobs, paths, settings
from state.cloud import hub
from state.events import EVENTS_FILE, last_event
from state.train import runs
from ui import fmt, hf_token, waiting


def _last_result(kind: str, what: str) -> None:
    """The latest job of `kind`: running, its result, or its error with the hint."""
    d = hub.latest_job(kind)
    if d is None:
        return
    status = jobs.reconcile(d)
    if status.active:  # redraws itself until the job ends, then the page shows the result
        waiting.until_done(d, lambda: st.info(
            f"{what} `{d.name}`: {(last_event(d / EVENTS_FILE, ['phase']) or {}).get('step') or 'running'}…"))
    elif status.status == "completed":
        done = last_event(d / EVENTS_FILE, ["published", "restored"]) or {}
        st.success(f"{what} `{d.name}` done: {done.get('url') or done.get('run_dir') or ''}")
    else:
        err = last_event(d / EVENTS_FILE, ["error"]) or {}
        st.error(fmt.with_hint(f"{what} `{d.name}` {status.status}: {err.get('message') or status.detail}",
                               err.get("hint")))


st.title("Publish")

# ---- TOKEN ---------------------------------------------------------------------------------
hf_token.field("publish_token", "Hugging Face token with write access",
               env_note="Using the HF_TOKEN environment variable (Space secret).")

# ---- PUBLISH A RUN -------------------------------------------------------------------------
st.subheader("Publish a run")
finished = hub.publishable_runs()
if not finished:
    st.info("No run has a finished adapter yet. Train one on the Train page; a completed or stopped run "
            "exports final/, which is what gets published.")
else:
    run_id = st.selectbox("Run", finished, key="publish_run")
    if settings.is_demo(str(runs.read_config(paths.run_dir(run_id))[0].get("model_id", ""))):
        st.warning("This run trained the tiny demo model (random weights): its adapter makes noise, not music. "
                   "Publishing it shares a demo, not a usable adapter.")
    repo = st.text_input("Repository name", value=f"acestep-lora-{run_id}", key="publish_repo",
                         help="'name' publishes under the token's account; 'org/name' under an organisation.")
    private = st.checkbox("Private", value=True, key="publish_private")
    st.caption("Uploads both adapter formats, training_meta.json, a loss-curve PNG, the run's A/B samples "
               "and a model card.")
    if st.button("Publish to the Hub", key="publish_go", type="primary"):
        try:
            hub.start_publish(run_id, repo, private, hf_token.token())
            st.rerun()
        except ValueError as exc:
            st.error(str(exc))
_last_result("publish", "Publish")

# ---- RESTORE FROM HUB SYNC -----------------------------------------------------------------
st.subheader("Restore a run from Hub sync")
st.caption("Hub sync (Space panel in the sidebar) pushes a run's checkpoints, events, config and audio to a "
           "private repository, so a Space that lost its disk can resume it.")
sync_repo = st.text_input("Sync repository", key="publish_sync_repo", placeholder="owner/my-acelora-sync")
if st.button("List synced runs", key="publish_list", disabled=not sync_repo):
    try:
        st.session_state["publish_synced"] = hub.list_synced_runs(sync_repo, hf_token.token())
    except hub.HubError as exc:
        st.error(fmt.with_hint(str(exc), exc.hint))
synced = st.session_state.get("publish_synced") or []
if synced:
    pick = st.selectbox("Run to restore", synced, key="publish_restore_run")
    if st.button("Restore into lora_output/", key="publish_restore"):
        hub.start_restore(sync_repo, pick, hf_token.token())
        st.rerun()
_last_result("hub-restore", "Restore")
