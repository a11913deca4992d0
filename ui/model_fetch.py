"""The "Download model" panel: starts a fetch job and shows its progress bar."""
from __future__ import annotations

import streamlit as st

from state import jobs, paths, settings
from state.events import EVENTS_FILE, last_event
from state.fsutil import read_json_object, write_json
from ui import fmt


def _fetch_jobs(repo_id: str) -> list:
    out = []
    for d in jobs.list_jobs(paths.jobs_dir()):
        if jobs.job_info(d).get("kind") == "fetch" and read_json_object(d / "params.json")[0].get("repo_id") == repo_id:
            out.append(d)
    return out


def download_panel(repo_id: str) -> None:
    found = _fetch_jobs(repo_id)
    st_ = jobs.reconcile(found[0]) if found else None
    if st_ and st_.active:
        _progress(found[0])
        return
    if st_ and st_.status in ("failed", "died"):
        err = last_event(found[0] / EVENTS_FILE, ["error"]) or {}
        st.error(fmt.with_hint(f"Last download failed: {err.get('message', st_.detail)}", err.get("hint")))
    st.info(f"{repo_id} is not on this machine. Downloading uses $HF_TOKEN if the repo needs one.")
    if st.button("Download model", key="train_fetch"):
        d = settings.new_job_dir("fetch")
        write_json(d / "params.json", {"repo_id": repo_id})
        jobs.launch(d, "fetch")
        st.rerun()


@st.fragment(run_every=2)
def _progress(job_dir) -> None:
    ev = last_event(job_dir / EVENTS_FILE, ["phase"]) or {}
    done, total = ev.get("done") or 0, ev.get("total") or 0
    gb = f"{done / 2**30:.2f} / {total / 2**30:.2f} GB" if total else "starting…"
    st.progress(min(1.0, done / total) if total else 0.0, text=f"Downloading: {gb}")
    if not jobs.reconcile(job_dir).active:
        st.rerun()
