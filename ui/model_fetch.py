"""The "Download model" panel: what a fetch will download and how big it is (Hub metadata, asked
before anything is downloaded), a token field for gated or private repos, then the fetch job's
one progress bar (download of every repo, then the import for release-layout models)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from state import jobs
from state.cloud.hub import HubError
from state.events import EVENTS_FILE, last_event
from state.model import catalog, download
from ui import fmt, hf_token

SIZE_TTL_S = 300  # Hub metadata changes rarely; a rerun of the page must not ask again


def choice_label(model_id: str) -> str:
    """The model picker's line; unconfirmed catalog ids say so."""
    return catalog.label(model_id)


def gb(n: int | float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@st.cache_data(ttl=SIZE_TTL_S, show_spinner="Asking the Hub how big the download is…", max_entries=64)
def _size(model_id: str, has_token: bool, _token: str | None) -> dict:
    """hub_size as plain data (cached per id and whether a token was given; the token is not a key)."""
    try:
        return download.hub_size(model_id, _token).to_dict()
    except HubError as exc:
        return {"error": str(exc), "hint": exc.hint}


def download_panel(model_id: str, key: str = "train_fetch") -> None:
    found = download.fetch_jobs(model_id)
    st_ = jobs.reconcile(found[0]) if found else None
    if st_ and st_.active:
        _progress(found[0])
        return
    if st_ and st_.status in ("failed", "died"):
        err = last_event(found[0] / EVENTS_FILE, ["error"]) or {}
        st.error(fmt.with_hint(f"Last download failed: {err.get('message', st_.detail)}", err.get("hint")))
    info = catalog.info_for(model_id)
    if model_id in catalog.KNOWN_MODELS and not info.confirmed:
        st.warning(f"{model_id} is not a confirmed Hub id: it may not exist. "
                   f"{catalog.KNOWN_MODELS[catalog.DEFAULT_MODEL_ID].name} ({catalog.DEFAULT_MODEL_ID}) is.")
    token = hf_token.token()
    size = _size(model_id, bool(token), token)
    if "error" in size:
        st.warning(fmt.with_hint(f"Download size unknown: {size['error']}", size["hint"]))
    else:
        st.info(f"{model_id} is not on this machine. Download: **{gb(size['bytes'])}** in {size['files']} files "
                f"from {', '.join(p['repo_id'] for p in size['parts'])}"
                + (", then converted to diffusers format on this machine." if size["source"] == "original" else "."))
    # not an expander: the Dataset page shows this panel inside one, and expanders do not nest
    hf_token.field(f"{key}_token", "Hugging Face token (only for gated or private repositories)",
                   env_note="Using the HF_TOKEN secret.")
    if st.button("Download model", key=key):
        download.start_fetch(model_id, hf_token.token())
        _size.clear()
        st.rerun()


@st.fragment(run_every=2)
def _progress(job_dir: Path) -> None:
    ev = last_event(job_dir / EVENTS_FILE, ["phase"]) or {}
    done, total = ev.get("overall_done") or 0, ev.get("overall_total") or 0
    if ev.get("name") == "import":
        text = "Converting to diffusers format (the download is complete)"
    elif total:
        text = (f"Downloading: {gb(ev.get('done') or 0)} / {gb(ev.get('total') or 0)}, "
                f"{ev.get('files_done', 0)} of {ev.get('files_total', '?')} files"
                + (f" · about {fmt.duration(ev['eta_s'])} left" if ev.get("eta_s") else ""))
    else:
        text = "Asking the Hub what to download…"
    st.progress(min(1.0, done / total) if total else 0.0, text=text)
    if not jobs.reconcile(job_dir).active:
        st.rerun()
