"""The Auto-label panel of the Dataset page: options, start, live progress, cancel, last result,
and the label suggestions a run left to review (with one click to accept, and ½× / 2× for a tempo).

Files only: the options go to params.json, the work runs as a detached `label` job
(trainer/label/autolabel.py), and progress comes back through its events.jsonl; suggestions live in
the dataset's label_suggestions.json (state/label/suggestions.py). No torch or librosa here.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from state import jobs, paths, settings
from state.dataset.manifest import LabelError, save_labels
from state.dataset.sidecar import SidecarError
from state.events import EVENTS_FILE, last_event, read_all
from state.fsutil import SaveError, read_json_object, write_json
from state.label import options, suggestions
from ui import fmt, model_fetch

MODES = {"both": "Signal + LM", "signal": "Signal only", "lm": "LM only"}
MODE_HELP = ("Signal: exact duration, tempo, key and time signature measured on the CPU without any model; "
             "values measured with low confidence are proposed for you to accept, not written. LM: the ACE-Step "
             "5 Hz LM listens to the track's audio codes and writes a "
             "caption, vocal language, time signature and lyrics. Both: confident measured values win, the LM's "
             "tempo picks the octave (the beat level ACE-Step's labels count), and where the two disagree the "
             "other value is shown as a suggestion.")
PROTECT_HELP = ("Tracks whose labels you edited or imported (or whose sidecar came with the audio) keep every "
                "value they have; only their empty fields are filled, and they stay marked as yours. Tracks "
                "labelled by an earlier auto-label run are relabelled.")


def _label_jobs(dataset: str) -> list[Path]:
    return [d for d in jobs.list_jobs(paths.jobs_dir())
            if jobs.job_info(d).get("kind") == "label" and read_json_object(d / "params.json")[0].get("dataset") == dataset]


def panel(ds) -> None:
    st.subheader("Auto-label")
    found = _label_jobs(ds.name)
    latest = jobs.reconcile(found[0]) if found else None
    if latest is not None and latest.active:
        _progress(found[0])
        return
    if latest is not None:
        _last_result(found[0], latest)

    # ---- OPTIONS ----
    model = settings.model_id()
    size = st.session_state.get("data_al_size", options.LM_SIZES[0])
    avail = options.availability(settings.resolve_model_dir(model), size, None, model)
    modes = list(MODES) if avail.ok else ["signal", "both", "lm"]  # first = default: what can run here
    mode = st.radio("What to label", modes, format_func=MODES.get, horizontal=True, key="data_al_mode",
                    help=MODE_HELP)
    c1, c2, c3, c4 = st.columns(4)
    c1.selectbox("LM size", options.LM_SIZES, key="data_al_size", disabled=mode == "signal",
                 help="Bigger LMs describe better and need more memory and time.")
    only_new = c2.checkbox("Only unlabelled tracks", key="data_al_only_new",
                           help="Skip every track whose sidecar already holds any label.")
    protect = c3.checkbox("Keep my edits", value=True, key="data_al_protect", help=PROTECT_HELP)
    lyrics = c4.checkbox("Also write lyrics", value=True, key="data_al_lyrics", disabled=mode == "signal",
                         help="Off: labels only (the LM stops after its description, which is faster).")

    # ---- LM AVAILABILITY ----
    if avail.ok:
        st.caption(f"LM: `{avail.lm}` · audio tokenizer: `{avail.codec.tokenizer}` ({avail.codec.kind})")
    elif mode == "signal":
        st.caption("LM labels (caption, language, time signature, lyrics) are not available on this machine; "
                   "choose “Signal + LM” to see what is missing.")
    else:
        for reason in avail.reasons:
            st.warning(reason)
        st.info("The LM part will be skipped; signal labels still run." if mode == "both" else
                "Choose “Signal only” or “Signal + LM” to label without the LM.")
        if avail.lm is None:
            with st.expander(f"Download {options.lm_repo_id(size)}"):
                model_fetch.download_panel(options.lm_repo_id(size))

    # ---- START ----
    blocked = mode == "lm" and not avail.ok
    if st.button("Auto-label all", key="data_al_start", type="primary", disabled=blocked):
        params = options.LabelParams(dataset=ds.name, mode=mode, only_unlabelled=only_new, protect_user=protect,
                                       lyrics=lyrics, lm_size=size)
        job_dir = settings.new_job_dir("label")
        write_json(job_dir / "params.json", params.to_dict())
        jobs.launch(job_dir, "label")
        st.rerun()


@st.fragment(run_every=2)
def _progress(job_dir: Path) -> None:
    ev = last_event(job_dir / EVENTS_FILE, ["phase"]) or {}
    done, total = ev.get("done") or 0, ev.get("total") or 0
    if ev.get("name") == "label" and total:
        # the job leaves eta_s unset until a track has been labelled (a file that fails at once says
        # nothing about how long the others take)
        eta = f" · about {fmt.duration(ev['eta_s'])} left" if (ev.get("eta_s") or 0) >= 1 else ""
        st.progress(min(1.0, done / total), text=f"Labelling track {min(done + 1, total)} of {total}{eta}")
    else:
        st.progress(0.0, text="Loading the LM and the audio tokenizer…" if ev.get("name") == "load" else "Starting…")
    warn = last_event(job_dir / EVENTS_FILE, ["warning"])
    if warn:
        st.caption(f"⚠️ {warn.get('message')}")
    if st.button("Cancel", key="data_al_cancel", help="Stops after the current track; finished tracks stay saved."):
        st.info(jobs.stop(job_dir))
    if not jobs.reconcile(job_dir).active:
        st.session_state.pop("data_scan", None)  # the page rescans and shows the new labels
        st.rerun()


def _last_result(job_dir: Path, status) -> None:
    events = read_all(job_dir / EVENTS_FILE)  # one label job's events: a few per track
    summary = next((e for e in reversed(events) if e.get("type") == "summary"), None)
    error = next((e for e in reversed(events) if e.get("type") == "error"), None)
    warnings = [e.get("message", "") for e in events if e.get("type") == "warning"]
    notes = [(Path(e.get("track", "")).name, n) for e in events if e.get("type") == "labeled" for n in e.get("notes") or []]
    if status.status == "failed" and error:
        st.error(fmt.with_hint(f"The last auto-label run failed: {error.get('message')}", error.get("hint")))
    elif status.status == "died":
        st.error(f"The last auto-label run stopped unexpectedly. {status.detail.splitlines()[0]}")
    elif summary:
        (st.success if status.status == "completed" and not warnings else st.info)(
            f"Last auto-label run: {summary.get('message')}")
    if warnings:
        with st.expander(f"{len(warnings)} warning(s) from the last run"):
            for w in warnings:
                st.markdown(f"- {w}")
    if notes:
        with st.expander(f"{len(notes)} note(s) on single tracks from the last run"):
            for name, n in notes:
                st.markdown(f"- **{name}**: {n}")


# ---- SUGGESTIONS -------------------------------------------------------------------------------

SOURCE_WORDS = {"dsp": "measured", "lm": "the LM"}


def _accept(ds, track: str, name: str, value=None) -> None:
    try:
        suggestions.accept(ds, track, name, value)
    except (LabelError, SidecarError, SaveError, KeyError) as exc:
        for p in getattr(exc, "problems", [str(exc)]):
            st.error(p)
        return
    _refresh()


def _refresh() -> None:
    st.session_state.pop("data_scan", None)  # the page rescans and its table shows the new value
    st.rerun()


def suggestion_list(ds, rows: list[dict]) -> None:
    """Every suggestion that still differs from its track's value, each with Accept and Dismiss."""
    todo = suggestions.pending(ds.dir, rows)
    if not todo:
        return
    with st.expander(f"{len(todo)} label suggestion(s) to review", expanded=len(todo) <= 8):
        st.caption("Values an auto-label run did not write: measured with low confidence, or where the signal "
                   "and the LM disagree (the one written is in the table). Accepting one saves it as your own edit.")
        for i, (row, s) in enumerate(todo):
            conf = f", confidence {s.confidence:.2f}" if s.confidence is not None else ""
            now = row.get(s.field)
            left, b1, b2 = st.columns([6, 1, 1])
            left.markdown(f"**{row['id']}** · {s.field} **{s.value}** ({SOURCE_WORDS.get(s.source, s.source)}{conf}; "
                          f"{s.reason}) · now: {'—' if now in (None, '') else now}")
            if b1.button("Accept", key=f"data_sug_ok_{i}"):
                _accept(ds, row["id"], s.field)
            if b2.button("Dismiss", key=f"data_sug_no_{i}"):
                suggestions.dismiss(ds.dir, row["id"], s.field)
                st.rerun()
        if len(todo) > 1 and st.button(f"Accept all {len(todo)}", key="data_sug_all"):
            edits: dict = {}
            for row, s in todo:
                edits.setdefault(row["id"], {})[s.field] = s.value
            try:
                save_labels(ds, edits, labeled_by="user")
            except (LabelError, SidecarError, SaveError) as exc:
                for p in getattr(exc, "problems", [str(exc)]):
                    st.error(p)
                return
            for row, s in todo:
                suggestions.dismiss(ds.dir, row["id"], s.field)
            _refresh()


def tempo_octave(ds, row: dict) -> None:
    """½× and 2× for a track's bpm: trackers agree on the pulse more often than on its octave."""
    bpm = row.get("bpm")
    if not bpm:
        return
    half, double = int(round(bpm / 2)), int(round(bpm * 2))
    c1, c2, c3 = st.columns([2, 1, 1])
    c1.caption(f"Tempo {bpm} bpm: count it in the beat you would tap.")
    if c2.button(f"½× → {half}", key=f"data_bpm_half_{row['id']}", disabled=half < 30):
        _save_bpm(ds, row["id"], half)
    if c3.button(f"2× → {double}", key=f"data_bpm_double_{row['id']}", disabled=double > 300):
        _save_bpm(ds, row["id"], double)


def _save_bpm(ds, track: str, bpm: int) -> None:
    try:
        save_labels(ds, {track: {"bpm": bpm}}, labeled_by="user")
    except (LabelError, SidecarError, SaveError) as exc:
        for p in getattr(exc, "problems", [str(exc)]):
            st.error(p)
        return
    _refresh()
