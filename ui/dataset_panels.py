"""The Dataset page's working parts: scanning with progress, saving with errors shown, the
folder watcher, and the "New dataset" panel. The page itself stays a list of screen regions."""
from __future__ import annotations

import os
import time
from pathlib import Path

import streamlit as st

from state import paths
from state.dataset import copy_in, manifest, uploads
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
    last = [0.0]

    def progress(i: int, n: int, name: str) -> None:
        # a few updates a second: one per file is 20,000 messages to the browser for a big folder
        if i == n or time.monotonic() - last[0] > 0.25:
            last[0] = time.monotonic()
            bar.progress(i / n, text=f"Checking {name} ({i:,}/{n:,})")

    result = manifest.scan(ds, progress=progress)
    bar.empty()
    st.session_state["data_scan"] = (ds.name, result)
    st.session_state["data_editor_gen"] = st.session_state.get("data_editor_gen", 0) + 1
    return result


@st.cache_resource(show_spinner=False, max_entries=4)
def _rows(path: str, stamp: tuple) -> list[dict]:
    return manifest.read_manifest(Path(path))


def rows(ds: manifest.Dataset) -> list[dict]:
    """The manifest, read once per change of the file (a 20,000-row index costs a second to parse).
    Shared between reruns and sessions: callers read it and never change it."""
    try:
        st_ = os.stat(ds.manifest_path)
        stamp = (st_.st_ino, st_.st_mtime_ns, st_.st_size)
    except OSError:
        stamp = None
    return _rows(str(ds.manifest_path), stamp)


def page_of(items: list, key: str, size: int, what: str = "rows") -> list:
    """A page of `items` with a page picker when there are more than `size`: the browser gets a
    page, never 20,000 rows or elements."""
    if len(items) <= size:
        return items
    pages = (len(items) + size - 1) // size
    page = st.number_input(f"Page (of {pages:,})", 1, pages, 1, key=key)
    start = (int(page) - 1) * size
    st.caption(f"Showing {what} {start + 1:,}–{min(start + size, len(items)):,} of {len(items):,}")
    return items[start:start + size]


def csv_report(rep) -> None:
    """A label import's outcome: what was updated, one summary line, and the first problems in full."""
    if rep.updated:
        st.success(f"Updated {len(rep.updated):,} track(s) from {rep.source}.")
    elif not rep.problem_count:
        st.info(f"{rep.source} matched no track with a label to change.")
    if rep.problem_count:
        st.warning(rep.summary())
        with st.expander(f"Problems in {rep.source} (first {len(rep.problems)})", expanded=rep.problem_count <= 10):
            st.markdown("\n".join(f"- {p}" for p in rep.problems))
            if rep.unlisted:
                st.caption(f"…and {rep.unlisted:,} more of the same kinds.")


def report(dataset: str, results) -> None:
    # Kept in the session: the files just written wake the folder watcher, which reruns the page.
    # Scoped to the dataset they went to, so another dataset never shows them.
    st.session_state["data_upload_report"] = (dataset, [(r.status in ("saved", "replaced"), r.message)
                                                        for r in results])


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


def show_report(dataset: str) -> None:
    owner, lines = st.session_state.get("data_upload_report") or (None, [])
    if owner != dataset or not lines:
        return
    saved = sum(ok for ok, _ in lines)
    with st.expander(f"Upload: {saved} of {len(lines)} file(s) saved to {dataset}", expanded=saved < len(lines)):
        for ok, message in lines:
            (st.success if ok else st.warning)(message)


def select(dataset: str) -> None:
    """Open `dataset` on the next run of the page (applied by `apply_selection` before the picker)."""
    st.session_state["dataset_name"] = dataset
    st.session_state["data_goto"] = dataset


def apply_selection(names: list[str]) -> None:
    if (goto := st.session_state.pop("data_goto", None)) in names:
        st.session_state["data_pick"] = goto


def new_dataset_panel(expanded: bool) -> None:
    """Create a dataset from uploads or from a folder on this machine (used in place, or copied in)."""
    with st.expander("New dataset", expanded=expanded):
        new_name = st.text_input("Name", key="data_new_name", placeholder="type a name, e.g. my-album",
                                 help="Letters, digits, '.', '_' and '-'.")
        tab_upload, tab_folder = st.tabs(["Upload files", "Use a folder on this machine"])
        with tab_upload:
            files = st.file_uploader("Audio files and sidecars", type=UPLOAD_TYPES, accept_multiple_files=True,
                                     key="data_new_files")
            if st.button("Create from uploads", key="data_create_upload", disabled=not (new_name and files)):
                if ds := _create(new_name):
                    report(ds.name, uploads.save_uploads(ds.dir, [(f.name, f.getvalue()) for f in files]))
                _open(ds)
            _missing(new_name, files, "Pick some audio files to upload.")
        with tab_folder:
            folder = st.text_input("Folder path", key="data_new_folder", placeholder="/home/me/music/album")
            copy = st.toggle("Copy the files into the workspace", key="data_new_copy",
                             help="Your folder is then only read: labels are saved beside the copies.")
            st.caption("Copies audio and sidecars into the workspace; labels you save go beside the copies."
                       if copy else "Used in place: labels you save or auto-label are written into this folder, "
                       "as a `.json` sidecar next to each song (`song.wav` → `song.json`). Nothing else is changed.")
            if st.button("Create from folder", key="data_create_folder", disabled=not (new_name and folder)):
                if copy:
                    bar = st.progress(0.0, text="Copying…")
                    ds = _create(new_name, lambda: copy_in.copy_folder(
                        paths.check_name(new_name, "Dataset name"), Path(folder),
                        lambda i, n, f: bar.progress(i / n, text=f"Copying {f} ({i}/{n})")))
                else:
                    ds = _create(new_name, lambda: manifest.create_dataset(
                        paths.check_name(new_name, "Dataset name"), Path(folder)))
                _open(ds)
            _missing(new_name, folder, "Enter the folder's path.")


def _create(name: str, make=None) -> manifest.Dataset | None:
    try:
        return make() if make else manifest.create_dataset(paths.check_name(name, "Dataset name"))
    except (ValueError, OSError) as exc:  # bad name, missing folder, name taken, no room
        st.error(str(exc))
        return None


def _open(ds: manifest.Dataset | None) -> None:
    if ds is None:
        return  # the error is on screen; the page goes on with the dataset it had
    select(ds.name)
    scan(ds)
    st.rerun()


def _missing(name: str, other, other_hint: str) -> None:
    # a disabled button with no reason looks broken: say what it waits for
    if not name:
        st.caption("Type a name for the dataset above to enable this.")
    elif not other:
        st.caption(other_hint)


def where_labels_go(ds: manifest.Dataset) -> None:
    """Before anything is saved: where labels (edits, auto-label, CSV) are written, and how to keep a
    folder on this machine untouched instead."""
    if not ds.external:
        st.caption(f"Labels are saved as `.json` sidecars next to the audio in the workspace (`{ds.dir}`).")
        return
    with st.container(border=True):
        st.markdown(f"Labels you save here, import or auto-label are written **into your folder** `{ds.source}`, "
                    "as a `.json` sidecar next to each song (`song.wav` → `song.json`). The audio is never changed.")
        c = st.columns([2, 3])
        copy_name = c[0].text_input("Copy's name", value=f"{ds.name}-copy", key="data_copy_name",
                                    label_visibility="collapsed")
        if c[1].button("Copy into the workspace instead", key="data_copy_in",
                       help="A new dataset with copies of the audio and sidecars; your folder is then only read."):
            bar = st.progress(0.0, text="Copying…")
            new = _create(copy_name, lambda: copy_in.copy_folder(
                paths.check_name(copy_name, "Dataset name"), ds.source,
                lambda i, n, f: bar.progress(i / n, text=f"Copying {f} ({i}/{n})")))
            _open(new)


def play(path: str) -> None:
    """The track's audio player: the file itself, or an MP3 of it where only FFmpeg decodes it (no browser
    plays WMA; ALAC and Opus depend on the browser)."""
    from state.dataset import decode
    from state.dataset.probe import native_extensions

    if not decode.needs_fallback(path, native_extensions()):
        st.audio(path)
        return
    try:
        st_ = os.stat(path)
        st.audio(_preview_mp3(path, st_.st_mtime, st_.st_size), format="audio/mpeg")
        st.caption("Played from an MP3 made for this preview; training decodes the original file.")
    except (OSError, decode.DecodeError) as exc:
        st.warning(f"{Path(path).name} cannot be played here: {exc}")


@st.cache_data(max_entries=4, show_spinner="Decoding for the player…")
def _preview_mp3(path: str, mtime: float, size: int) -> bytes:  # mtime and size: a changed file is decoded again
    from state.dataset import decode

    return decode.preview_mp3(path)
