"""Dataset page: pick or create a dataset, check every file, edit labels, import a CSV."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from state.dataset import labels, manifest, uploads
from state.dataset.csv_import import import_csv
from ui import autolabel
from ui import dataset_panels as panels
from ui.dataset_panels import UPLOAD_TYPES

TEXT_CELLS = ("caption", "lyrics", "keyscale")  # shown as "" rather than a grey "None" when unset
STATUS_ICON = {"ok": "✅", "warning": "⚠️", "error": "❌"}
TABLE_PAGE = 200  # rows per page of the label table

st.title("Dataset")
st.caption("Audio files plus optional same-name sidecars (`song.wav` + `song.json`). Labels are optional; "
           "captions help a lot.")

# ---- CHOOSE OR CREATE ---------------------------------------------------------------------
panels.new_dataset_panel(expanded=not manifest.list_datasets())
names = manifest.list_datasets()

if not names:
    st.info("Create a dataset above: upload some songs, or point at a folder of audio files.")
    st.stop()

panels.apply_selection(names)
current = st.session_state.get("dataset_name")
name = st.selectbox("Dataset", names, index=names.index(current) if current in names else 0, key="data_pick")
st.session_state["dataset_name"] = name
ds = manifest.open_dataset(name)
st.caption(f"Audio folder: `{ds.source}`")
panels.show_report(name)

# ---- ADD FILES -----------------------------------------------------------------------------
if not ds.external:
    with st.expander("Add files"):
        more = st.file_uploader("Drop audio files and sidecars", type=UPLOAD_TYPES, accept_multiple_files=True,
                                key=f"data_more_{st.session_state.get('data_editor_gen', 0)}")
        replace = st.checkbox("Replace existing files with the same name (old ones kept as backups)",
                              key="data_replace")
        if st.button("Add to dataset", key="data_add", disabled=not more):
            panels.report(ds.name, uploads.save_uploads(ds.dir, [(f.name, f.getvalue()) for f in more],
                                         on_conflict="replace" if replace else "skip"))
            panels.scan(ds)

# ---- SCAN ----------------------------------------------------------------------------------
watch = panels.watch(str(ds.source))
scanned = st.session_state.get("data_scan")
if st.button("Rescan folder", key="data_rescan") or not scanned or scanned[0] != name:
    st.session_state["data_watch_gen"] = watch.generation
    scanned = (name, panels.scan(ds))
result: manifest.ScanResult = scanned[1]


@st.fragment(run_every=3)
def _notice_changes() -> None:
    # watchdog tells us when files appear or change; only then do we rescan
    if watch.generation != st.session_state.get("data_watch_gen", 0):
        st.session_state["data_watch_gen"] = watch.generation
        watch.take_changes()
        st.session_state.pop("data_scan", None)
        st.rerun()


_notice_changes()
rows = panels.rows(ds)
for note in result.notes:
    st.warning(note)

# ---- SUMMARY -------------------------------------------------------------------------------
s = manifest.summary(rows)
with st.container(horizontal=True, gap="large"):  # wraps on a narrow window instead of cutting "2.2 min" to "2.2…"
    for label, value in (("Tracks", s["tracks"]), ("OK", s["ok"]), ("Warnings", s["warning"]),
                         ("Errors", s["error"]), ("Usable audio", f"{s['seconds'] / 60:.1f} min")):
        st.metric(label, value, width="content")
(st.success if s["can_train"] and s["captioned"] == s["usable"] else st.info if s["can_train"] else st.error)(
    s["verdict"])
if not rows:
    st.info("No audio files found in this folder yet. Add files above, or copy them into the folder.")
    st.stop()

# ---- PROBLEMS ------------------------------------------------------------------------------
flagged = [r for r in rows if r["problems"]]
if flagged or result.orphans:
    with st.expander(f"Problems ({len(flagged)} files, {len(result.orphans)} stray sidecars)",
                     expanded=s["error"] > 0):
        for r in panels.page_of(flagged, key="data_problems_page", size=50, what="files"):
            st.markdown(f"**{STATUS_ICON[r['status']]} {r['id']}**")
            for text in r["problems"]:
                st.markdown(f"- {text}")
        for o in result.orphans[:50]:
            st.markdown(f"- ⚠️ {o}")
        if len(result.orphans) > 50:
            st.caption(f"…and {len(result.orphans) - 50:,} more stray sidecars.")

panels.where_labels_go(ds)
autolabel.panel(ds)
autolabel.suggestion_list(ds, rows)

# ---- LABELS --------------------------------------------------------------------------------
st.subheader("Labels")
view = panels.page_of(rows, key="data_table_page", size=TABLE_PAGE, what="tracks")
if len(view) < len(rows):
    st.caption("Save before turning the page: unsaved edits stay on their page.")
table = pd.DataFrame([{"status": STATUS_ICON[r["status"]], "id": r["id"],
                       **{k: r.get(k) if r.get(k) is not None or k not in TEXT_CELLS else "" for k in labels.LABEL_FIELDS},
                       "seconds": r.get("seconds"),
                       "labeled_by": r.get("labeled_by")} for r in view])
edited = st.data_editor(
    table, hide_index=True,
    key=f"data_editor_{st.session_state.get('data_editor_gen', 0)}_{st.session_state.get('data_table_page', 1)}",
    disabled=["status", "id", "seconds", "labeled_by"],
    column_config={
        "caption": st.column_config.TextColumn("caption", width="large"),
        "lyrics": st.column_config.TextColumn("lyrics", width="medium"),
        "bpm": st.column_config.NumberColumn("bpm", min_value=30, max_value=300, step=1),
        "keyscale": st.column_config.TextColumn("keyscale", help='e.g. "A minor", "F# major"'),
        "timesignature": st.column_config.SelectboxColumn("timesignature", options=list(labels.TIME_SIGNATURES)),
        "vocal_language": st.column_config.SelectboxColumn("vocal_language", options=list(labels.LANGUAGES)),
        "duration": st.column_config.NumberColumn("duration", min_value=10, max_value=600),
        "seconds": st.column_config.NumberColumn("seconds", format="%.1f"),
    },
)
changes = manifest.edits_from_table(view, edited.to_dict("records"))
if st.button(f"Save {len(changes)} changed track(s)" if changes else "Save labels", key="data_save",
             type="primary", disabled=not changes):
    panels.save(ds, changes, f"Saved labels for {len(changes)} track(s).")
if msg := st.session_state.pop("data_saved", None):
    st.success(msg)

# ---- ONE TRACK -----------------------------------------------------------------------------
st.subheader("Listen and edit one track")
ids = [r["id"] for r in view]  # the table's page: a 20,000-option list would be sent on every rerun
first_ok = next((i for i, r in enumerate(view) if r["status"] != "error"), 0)  # not a file that cannot play
tid = st.selectbox("Track", ids, index=first_ok, key="data_track")
row = next(r for r in view if r["id"] == tid)
left, right = st.columns([1, 1])
with left:
    if row["status"] != "error" or row.get("sample_rate"):
        panels.play(row["audio"])
    st.caption(f"{row.get('seconds') or 0:.1f} s · {row.get('sample_rate') or '?'} Hz · "
               f"{row.get('channels') or '?'} ch · sidecar: {row.get('sidecar') or 'none'}")
    for text in row["problems"]:
        st.warning(text)
    autolabel.tempo_octave(ds, row)
with right:
    with st.form(key=f"data_track_form_{tid}"):
        cap = st.text_area("Caption", row.get("caption") or "", height=90)
        lyr = st.text_area("Lyrics", row.get("lyrics") or "", height=220,
                           help="Section tags like [Verse], [Chorus]; [Instrumental] for none.")
        if st.form_submit_button("Save track"):
            panels.save(ds, {tid: {"caption": cap, "lyrics": lyr}}, f"Saved {tid}.")

# ---- CSV IMPORT ----------------------------------------------------------------------------
csv_report = st.session_state.get("data_csv_report")
csv_report = csv_report if csv_report and csv_report[0] == name else None
with st.expander("Import labels from a CSV", expanded=csv_report is not None):
    st.caption("A `file` column with each track's file name, plus any of: " + ", ".join(labels.LABEL_FIELDS))
    csv_file = st.file_uploader("CSV file", type=["csv", "tsv", "txt"], key="data_csv")
    if csv_file is not None and st.button("Import labels", key="data_csv_go"):
        # kept in the session: the sidecars just written wake the folder watcher, which reruns the page
        st.session_state["data_csv_report"] = (name, csv_file.name, import_csv(ds, csv_file.getvalue(), csv_file.name))
        st.session_state.pop("data_scan", None)
        st.rerun()
    if csv_report:
        panels.csv_report(csv_report[2])
