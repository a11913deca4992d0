"""The Dataset page's working parts: scanning with progress, saving with errors shown, the
folder watcher, and the "New dataset" panel. The page itself stays a list of screen regions."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from state import paths
from state.dataset import manifest, uploads
from state.dataset.probe import audio_extensions
from state.dataset.sidecar import SidecarError
from state.fsutil import SaveError
from state.watch import FolderWatch

UPLOAD_TYPES = [e.lstrip(".") for e in audio_extensions()] + ["json"]


@st.cache_resource(show_spinner=False)
def watch(folder: str) -> FolderWatch:
    return FolderWatch(Path(folder), suffixes=tuple(audio_extensions()) + (".json",))


def scan(ds: manifest.Dataset) -> manifest.ScanResult:
    bar = st.progress(0.0, text="Checking files…")
    result = manifest.scan(ds, progress=lambda i, n, name: bar.progress(i / n, text=f"Checking {name} ({i}/{n})"))
    bar.empty()
    st.session_state["data_scan"] = (ds.name, result)
    st.session_state["data_editor_gen"] = st.session_state.get("data_editor_gen", 0) + 1
    return result


def report(results) -> None:
    # Kept in the session: the files just written wake the folder watcher, which reruns the page.
    st.session_state["data_upload_report"] = [(r.status in ("saved", "replaced"), r.message) for r in results]


def save(ds: manifest.Dataset, edits: dict, done: str) -> None:
    """Write edits; on success rerun with a note, else show every problem (nothing was written)."""
    try:
        manifest.save_labels(ds, edits)
    except (manifest.LabelError, SidecarError, SaveError) as exc:
        for p in getattr(exc, "problems", [str(exc)]):
            st.error(p)
        return
    st.session_state["data_saved"] = done
    st.session_state.pop("data_scan", None)
    st.rerun()


def show_report() -> None:
    for ok, message in st.session_state.get("data_upload_report", []):
        (st.success if ok else st.warning)(message)


def new_dataset_panel(expanded: bool) -> None:
    """Create a dataset from uploads or from a folder on this machine."""
    with st.expander("New dataset", expanded=expanded):
        new_name = st.text_input("Name", key="data_new_name", placeholder="my-album",
                                 help="Letters, digits, '.', '_' and '-'.")
        tab_upload, tab_folder = st.tabs(["Upload files", "Use a folder on this machine"])
        with tab_upload:
            files = st.file_uploader("Audio files and sidecars", type=UPLOAD_TYPES, accept_multiple_files=True,
                                     key="data_new_files")
            if st.button("Create from uploads", key="data_create_upload", disabled=not (new_name and files)):
                try:
                    ds = manifest.create_dataset(paths.check_name(new_name, "Dataset name"))
                except (ValueError, FileExistsError) as exc:
                    st.error(str(exc))
                    st.stop()
                report(uploads.save_uploads(ds.dir, [(f.name, f.getvalue()) for f in files]))
                st.session_state["dataset_name"] = ds.name
                scan(ds)
        with tab_folder:
            folder = st.text_input("Folder path", key="data_new_folder", placeholder="/home/me/music/album")
            if st.button("Create from folder", key="data_create_folder", disabled=not (new_name and folder)):
                try:
                    ds = manifest.create_dataset(paths.check_name(new_name, "Dataset name"), Path(folder))
                except (ValueError, FileNotFoundError, FileExistsError) as exc:
                    st.error(str(exc))
                    st.stop()
                st.session_state["dataset_name"] = ds.name
                scan(ds)
