"""AceLoRA dashboard entry: navigation, session defaults and the shared sidebar.

Run with `streamlit run streamlit_app.py`. This process only reads and writes files; every heavy
job runs as a detached subprocess (trainer/run.py), so this file never imports torch.
"""
from __future__ import annotations

import time

import streamlit as st

from state import device, fsutil, jobs, paths, settings
from ui import fmt, gate, space_panel

st.set_page_config(page_title="AceLoRA", page_icon="🎛️", layout="wide")


@st.cache_data(ttl=30, show_spinner=False)
def _device() -> dict:
    return device.describe()


def sidebar() -> None:
    with st.sidebar:
        d = _device()
        st.caption("Device")
        st.markdown(f"**{d['label']}**" + (f": {d['precision']}" if d.get("precision") else ""))
        mem = f" · GPU {d['gpu_mem_total_gb']} GB" if d.get("gpu_mem_total_gb") else ""
        st.caption(f"RAM {d['ram_available_gb']} / {d['ram_total_gb']} GB free{mem}")
        model = settings.model_id()
        st.caption("Model")
        if settings.is_demo(model):
            missing = settings.resolve_model_dir(model) is None
            st.markdown("**Tiny demo model** (random weights: produces noise, not music)"
                        + (" · built when you open Train" if missing else ""))
        else:
            st.markdown(f"**{model}**")
        st.caption(f"Workspace: `{paths.root()}`")
        st.divider()
        st.caption("Jobs")
        _jobs()


@st.fragment(run_every=5)
def _jobs() -> None:
    # its own fragment: the list stays current while the page itself sits still
    active = jobs.active_jobs()
    for problem in fsutil.write_failures():  # once per file system, however many jobs hit it
        st.error(problem)
    if not active:
        st.caption("No job running.")
    for j in active:
        icon = "⏳" if j.status == "queued" else "🟢"
        since = fmt.duration(time.time() - j.started_at) if j.started_at else ""
        st.markdown(f"{icon} `{j.job_id}` · {j.kind} · {j.status} · {since}")


st.session_state.setdefault("dataset_name", None)

pages = [
    st.Page("app_pages/dataset.py", title="Dataset", icon="🎵", default=True),
    st.Page("app_pages/train.py", title="Train", icon="🏋️"),
    st.Page("app_pages/runs.py", title="Runs", icon="📈"),
    st.Page("app_pages/ab.py", title="A/B listening", icon="🎧"),
    st.Page("app_pages/publish.py", title="Publish", icon="🚀"),
]
gate.require_password()
sidebar()
space_panel.panel()  # Space only: hardware, cost, storage warning, pause / sleep / Hub sync
st.navigation(pages).run()
