"""A/B page: render the base and a run's adapter from the same noise, listen blind, vote."""
from __future__ import annotations

import streamlit as st

from state import jobs, paths, settings
from state.fsutil import read_json_object
from state.listen import ab, votes
from state.train import runs
from ui import ab as ab_view
from ui import style_view

st.title("A/B listening")

# ---- GUARD ---------------------------------------------------------------------------------
run_ids = [d.name for d in runs.list_runs()]
if not run_ids:
    st.info("No runs yet. Train an adapter on the Train page, then compare it with the base model here.")
    st.stop()

# ---- RUN AND ADAPTER -----------------------------------------------------------------------
style_view.apply_ab_preselect()  # the Runs page's "Listen to step-N" hands over a run and an adapter
run_id = st.selectbox("Run", run_ids, key="ab_run")
run_dir = paths.run_dir(run_id)
if settings.is_demo(str(read_json_object(run_dir / "config.json")[0].get("model_id", ""))):
    st.warning("This run trained the tiny demo model (random weights): both sides are noise, not music.")
sources = ab.adapter_sources(run_dir)
if sources:
    mode = st.radio("Compare", ab.MODES, key="ab_mode", horizontal=True,
                    format_func=lambda m: {"base-vs-adapter": "Base vs adapter",
                                           "checkpoint-vs-checkpoint": "Checkpoint vs checkpoint"}[m])
    if mode == ab.MODES[0]:
        picked = [st.selectbox("Adapter", sources, key="ab_source", format_func=ab.source_name)]
    else:
        picked = st.multiselect("Adapters (two or more)", sources, default=sources[:2], key="ab_sources",
                                format_func=ab.source_name)

    # ---- PROMPT --------------------------------------------------------------------------------
    tracks = ab.dataset_tracks(run_dir)
    origin = st.radio("Prompt", ["From a dataset track", "Typed"] if tracks else ["Typed"], key="ab_origin",
                      horizontal=True)
    pre, tag = {}, "typed"
    if origin.startswith("From"):
        row = st.selectbox("Track", tracks, key="ab_track", format_func=lambda r: r.get("id") or r.get("audio"))
        pre, tag = ab.prompt_from_track(row), row.get("id") or "track"
    caption = st.text_area("Caption", pre.get("caption", ""), key=f"ab_caption_{tag}", height=80)
    lyrics = st.text_area("Lyrics", pre.get("lyrics", "[Instrumental]"), key=f"ab_lyrics_{tag}", height=80)
    c = st.columns(5)
    bpm = c[0].number_input("BPM (0 = none)", 0, 300, int(pre.get("bpm") or 0), key=f"ab_bpm_{tag}")
    keyscale = c[1].text_input("Key", pre.get("keyscale", ""), key=f"ab_key_{tag}", placeholder="C major")
    timesig = c[2].text_input("Time signature", str(pre.get("timesignature", "")), key=f"ab_ts_{tag}", placeholder="4")
    language = c[3].text_input("Vocal language", pre.get("vocal_language", "unknown"), key=f"ab_lang_{tag}")
    duration = c[4].number_input("Seconds", 1.0, 600.0, float(pre.get("duration", 10.0)), key=f"ab_dur_{tag}")

    # ---- SETTINGS ------------------------------------------------------------------------------
    d = ab.default_settings(run_dir)
    c = st.columns(5)
    seed = c[0].number_input("Seed", 0, 2**31 - 1, 0, key="ab_seed")
    steps = c[1].number_input("Steps", 1, 200, d["steps"], key="ab_steps")
    shift = c[2].number_input("Shift", 0.1, 20.0, d["shift"], key="ab_shift")
    guidance = c[3].number_input("Guidance (1 = none)", 1.0, 30.0, d["guidance"], key="ab_guidance")
    scales_text = c[4].text_input("LoRA scales", "0, 1.0", key="ab_scales", help="0 is the base model.")

    # ---- GENERATE ------------------------------------------------------------------------------
    prompt = {"caption": caption, "lyrics": lyrics, "bpm": int(bpm) or None, "keyscale": keyscale or None,
              "timesignature": timesig or None, "vocal_language": language or "unknown", "duration": float(duration)}
    try:
        req = ab.ABRequest.from_dict({
            "run_id": run_id, "mode": mode, "sources": [str(p) for p in picked],
            "prompt": {k: v for k, v in prompt.items() if v is not None}, "seed": int(seed), "steps": int(steps),
            "shift": float(shift), "guidance": float(guidance), "scales": ab.parse_scales(scales_text),
            "device": d["device"]})
        problem = None
    except ab.ABError as exc:
        req, problem = None, str(exc)
    if problem:
        st.warning(problem)
    if st.button("Generate", type="primary", disabled=req is None, key="ab_generate"):
        st.session_state["ab_comp"] = ab.start_comparison(run_dir, req).name
        st.rerun()
else:
    st.info("This run has no adapter yet: it appears here once the run saves a checkpoint or finishes.")

# ---- LISTEN AND VOTE -----------------------------------------------------------------------
comps = ab.list_comparisons(run_dir)
if not comps:
    st.stop()
st.divider()
st.subheader("Listen and vote")
st.caption(f"Votes for {run_id}: {votes.summary(run_dir)['sentence']}")
names = [p.name for p in comps]
if st.session_state.get("ab_comp") not in names:
    st.session_state["ab_comp"] = names[0]
comp_dir = run_dir / ab.SAMPLES / st.selectbox("Comparison", names, key="ab_comp")

if jobs.status(comp_dir).active:
    @st.fragment(run_every=1)
    def _progress() -> None:
        if not jobs.status(comp_dir).active:
            st.rerun()  # done: redraw the whole page with the players
        ab_view.progress(comp_dir)
        if st.button("Cancel", key="ab_cancel"):
            st.toast(jobs.stop(comp_dir))

    _progress()
else:
    ab_view.comparison(run_dir, comp_dir)
