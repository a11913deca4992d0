"""Train page widgets for HF Jobs: where to train (this machine or a rented flavour, with its price),
and a remote run's Job, cost and Resume on HF Jobs. Offered only when a Hugging Face token is
available (the HF_TOKEN secret, a token typed this session, or a `hf auth login` on this machine).
"""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from state import jobs
from state.cloud import hub
from state.cloud import remote_jobs as rj
from state.train import runs
from ui import hf_token

HERE, REMOTE = "This machine", "HF Jobs (rented hardware)"


def _token() -> str | None:
    return hf_token.token() or hub.hf_token()


def start_choice(config: dict | None, rows: list[dict], blocked: bool,
                 key: str = "train_hfjobs") -> tuple[bool, Path | None]:
    """The 'Run on HF Jobs' choice above Start: (HF Jobs chosen, the new run's folder once started there)."""
    token = _token()
    if not token:
        with st.expander("Run on HF Jobs (rented GPUs): needs a Hugging Face token"):
            st.caption("Set HF_TOKEN, run `hf auth login` on this machine, or paste a write token here.")
            hf_token.field(f"{key}_token")
        return False, None
    where = st.radio("Where", [HERE, REMOTE], horizontal=True, key=f"{key}_where")
    if where == HERE:
        return False, None
    flavors = rj.FLAVORS
    default = flavors.index("l4x1") if "l4x1" in flavors else 0
    flavor = st.selectbox("Hardware", flavors, index=default, format_func=rj.flavor_label, key=f"{key}_flavor",
                          help="Billed by the minute while the Job runs (prices: the Hub's Space hardware table, "
                               "the same hardware and rates for Jobs). CPU flavours only suit the demo model.")
    image = st.text_input("Image", value=rj.default_image(), key=f"{key}_image",
                          placeholder="hf.co/spaces/<you>/acelora",
                          help="The AceLoRA Docker image the Job runs: your AceLoRA Space (README, 'Run on a "
                               "Hugging Face Space'), whose image holds CUDA PyTorch, the pinned requirements "
                               "and this code.")
    st.caption(f"Pushes the dataset to a private dataset repo ({rj.DATA_REPO}), trains there, syncs events and "
               f"checkpoints through a private repo ({rj.RUNS_REPO}) and brings final/ back here. Stop saves first; "
               "pressing it twice cancels the Job.")
    if st.button(f"Start on HF Jobs · {rj.flavor_label(flavor)}", type="primary", disabled=blocked or config is None,
                 key=f"{key}_start"):
        try:
            return True, rj.start_remote(config, rows, flavor, image, token)
        except (ValueError, hub.HubError) as exc:
            st.error(str(exc) + (f" {exc.hint}" if isinstance(exc, hub.HubError) else ""))
    return True, None


def run_status(run_dir: Path, key: str = "train_hfjobs_run") -> None:
    """For a run trained on HF Jobs: its Job and cost so far; when it has ended, Resume on HF Jobs."""
    if not rj.is_remote(run_dir):
        return
    rec = rj.record(run_dir)
    if jobs.job_info(run_dir).get("kind") == rj.KIND:  # not after a Resume on this machine
        line = rj.status_line(run_dir, time.time())
        if rec.get("url"):
            line += f" · [Job page]({rec['url']})"
        st.info(line, icon="☁️")
    attach = rj.can_attach(run_dir)
    if jobs.status(run_dir).active or not (attach or runs.checkpoints(run_dir)):
        return
    if attach:
        st.warning(f"This machine lost track of Job {rec['job_id']}, which may still be running (and billed).")
    token = _token()
    label, why = (("🔗 Follow the Job again", "Watches the Job that is still recorded as running, instead of "
                   "starting a second one.") if attach else
                  ("▶ Resume on HF Jobs", "Continues from the latest checkpoint here (pushed first), on the "
                   "same hardware."))
    if token and st.button(label, key=f"{key}_resume", help=why):
        try:
            rj.resume_remote(run_dir, token)
            st.rerun()
        except (ValueError, RuntimeError, hub.HubError) as exc:
            st.error(str(exc) + (f" {exc.hint}" if isinstance(exc, hub.HubError) else ""))
