"""Runs page: every run with its status and numbers; one run's details; compare runs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from state import jobs, paths, settings
from state.train import runs, trackers
from ui import ab as ab_view
from ui import charts, live, style_view, train_form


@st.cache_data(show_spinner=False, max_entries=512)
def _summary(run_dir: str, size: int, mtime: float, alive: bool, files: tuple) -> tuple[dict, str]:
    # Keyed by the events file's size, mtime and liveness (and job.json/config.json's mtimes, so a
    # damaged or repaired file shows at once): a finished run is parsed once, not per rerun.
    s = runs.summary_or_damaged(Path(run_dir))
    return s.row(), s.damaged


def _row(d: Path) -> tuple[dict, str]:
    stamps = []
    for name in ("events.jsonl", "job.json", "config.json"):
        try:
            s = (d / name).stat()
            stamps.append((s.st_size, s.st_mtime))
        except OSError:
            stamps.append((0, 0.0))
    return _summary(str(d), *stamps[0], jobs.is_alive(d), tuple(stamps[1:]))


st.title("Runs")
dirs = runs.list_runs()
if not dirs:
    st.info("No runs yet. Start one on the Train page.")
    st.stop()

# ---- ALL RUNS ------------------------------------------------------------------------------
summaries = [_row(d) for d in dirs]
table = pd.DataFrame([row for row, _ in summaries])
for row, damaged in summaries:
    if damaged:
        st.warning(f"**{row['run']}** is damaged: {damaged}")
f1, f2 = st.columns([1, 3])
status_filter = f1.multiselect("Status", sorted(table["status"].unique()), key="runs_status")
text_filter = f2.text_input("Filter by run or model", key="runs_text")
view = table
if status_filter:
    view = view[view["status"].isin(status_filter)]
if text_filter:
    mask = view["run"].str.contains(text_filter, case=False) | view["model"].fillna("").str.contains(text_filter, case=False)
    view = view[mask]
st.dataframe(view, hide_index=True, width="stretch",
             column_config={"last loss": st.column_config.NumberColumn(format="%.4f"),
                            "best loss": st.column_config.NumberColumn(format="%.4f")})

# ---- ONE RUN -------------------------------------------------------------------------------
st.subheader("Run details")
run_id = st.selectbox("Run", [d.name for d in dirs], key="runs_pick")
run_dir = paths.run_dir(run_id)
if settings.is_demo(str(runs.read_config(run_dir)[0].get("model_id", ""))):
    st.warning("This run trained the tiny demo model (random weights): its adapter makes noise, not music. "
               "Train on a real ACE-Step model before publishing or comparing by ear.")
if st.button("New run from these settings", key="runs_clone",
             help="Opens Train → New run with this run's settings filled in."):
    train_form.start_from_run(run_dir)
    st.switch_page("app_pages/train.py")
tab_live, tab_cfg, tab_files, tab_samples = st.tabs(["Progress", "Config", "Checkpoints & adapter", "Samples"])
with tab_live:
    status = live.render(run_dir, key="runs_live")
with tab_cfg:
    cfg, cfg_damaged = runs.read_config(run_dir)
    if cfg_damaged:
        st.error(cfg_damaged)
    else:
        st.json(cfg)
        for log in trackers.logs_for(run_dir, cfg.get("report_to") or []):  # TensorBoard / trackio, if chosen
            there = "" if log.folder.exists() else " (nothing written yet)"
            st.markdown(f"**{log.name}** logs: `{log.folder}`{there}. Open them with:")
            st.code(log.command, language="bash")
with tab_files:
    ckpts = runs.checkpoints(run_dir)
    st.write(f"{len(ckpts)} checkpoint(s): " + ", ".join(p.name for p in ckpts) if ckpts else "No checkpoints.")
    if ckpts and status in ("stopped", "died", "failed"):
        pick = st.selectbox("Resume from", [p.name for p in ckpts][::-1], key="runs_resume_pick")
        if st.button("Resume", key="runs_resume"):
            runs.start_run({}, [], run_id=run_id, resume=pick)
            train_form.goto_run(run_id)  # the run just resumed is the one on screen, with its controls
            st.switch_page("app_pages/train.py")
    final = run_dir / "final"
    if final.is_dir():
        st.write("Final adapter: " + ", ".join(sorted(p.name for p in final.iterdir())))
        if st.button("Prepare adapter zip", key="runs_zip"):
            st.session_state["runs_zip_data"] = (run_id, runs.zip_dir(final))
        zipped = st.session_state.get("runs_zip_data")
        if zipped and zipped[0] == run_id:
            st.download_button("Download adapter (.zip)", zipped[1], file_name=f"{run_id}-adapter.zip",
                               mime="application/zip", key="runs_zip_dl")
    else:
        st.caption("No final adapter yet (it is written when a run completes).")
    with st.popover("Delete run", disabled=jobs.is_alive(run_dir)):
        st.warning(f"Delete {run_id} with all its checkpoints and adapter? This cannot be undone.")
        if st.button("Yes, delete", key="runs_delete", type="primary"):
            runs.delete_run(run_dir)
            st.rerun()

with tab_samples:
    ab_view.step_samples(run_dir)

# ---- STYLE DISTANCE ------------------------------------------------------------------------
st.subheader("Did the adapter learn the sound?")
style_view.panel(run_dir, run_id)

# ---- COMPARE -------------------------------------------------------------------------------
st.subheader("Compare runs")
chosen = st.multiselect("Runs", [d.name for d in dirs], key="runs_compare")
if len(chosen) >= 2:
    st.plotly_chart(charts.compare_figure({r: runs.load_series(paths.run_dir(r)) for r in chosen},
                                          log_y=st.toggle("Log scale", key="runs_cmp_log")), key="runs_cmp_fig")
    diff = runs.config_diff({r: runs.read_config(paths.run_dir(r))[0] for r in chosen})
    if diff:
        st.dataframe(pd.DataFrame(diff), hide_index=True, width="stretch")
    else:
        st.caption("The configs are identical.")
