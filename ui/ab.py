"""Drawing for A/B listening: a comparison's players, pictures and votes, a job's progress, and a
run's training previews. The numbers come from state.listen.ab (numpy); this module only draws them."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from state import events as ev
from state import jobs
from state.listen import ab, previews, votes
from ui import audio_pictures

FIG = dict(margin=dict(l=0, r=0, t=4, b=0), height=180, showlegend=False)
FREQ_TICKS = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


@st.cache_data(show_spinner=False, max_entries=64)
def _picture(path: str, mtime: float, kind: str) -> dict:
    # keyed by the file's mtime: a re-rendered file is recomputed, an unchanged one never is
    return audio_pictures.spectrogram(Path(path)) if kind == "Spectrogram" else audio_pictures.waveform(Path(path))


def picture(path: Path, kind: str, key: str) -> None:
    data = _picture(str(path), path.stat().st_mtime, kind)
    fig = go.Figure(layout=FIG)
    if kind == "Spectrogram":
        fig.add_trace(go.Heatmap(x=data["times"], y=data["freqs"], z=data["db"], colorscale="Magma",
                                 zmin=float(data["db"].max()) - 80, showscale=False))
        # named ticks: plotly's own log ticks read "2 10k 5 2 1000 5 2 100 5"
        top = float(data["freqs"].max())
        ticks = [f for f in FREQ_TICKS if f <= top]
        fig.update_yaxes(type="log", title_text="Hz", tickvals=ticks,
                         ticktext=[f"{f / 1000:g}k" if f >= 1000 else f"{f:g}" for f in ticks])
    else:
        fig.add_trace(go.Scatter(x=data["times"], y=data["max"], mode="lines", line=dict(width=0.6)))
        fig.add_trace(go.Scatter(x=data["times"], y=data["min"], mode="lines", line=dict(width=0.6), fill="tonexty"))
        fig.update_yaxes(range=[-1, 1])
    fig.update_xaxes(title_text="s")
    st.plotly_chart(fig, key=key)


def progress(comp_dir: Path) -> None:
    """The running job's phase as a progress bar (what the `generate` phase events say)."""
    last = ev.last_event(Path(comp_dir) / ev.EVENTS_FILE, types=("phase", "queued"))
    if not last or last.get("type") == "queued":
        st.progress(0.0, text="Starting: loading the model…")
        return
    done, total = last.get("done") or 0, last.get("total") or 1
    eta = f" · about {last['eta_s']:.0f} s left" if last.get("eta_s") is not None else ""
    st.progress(min(1.0, done / total), text=f"{last.get('name')}: {done}/{total}{eta}")


def comparison(run_dir: Path, comp_dir: Path) -> None:
    """Players side by side, blind or not; vote buttons; reveal once voted; downloads."""
    meta = ab.read_meta(comp_dir)
    if meta is None:
        st_ = jobs.reconcile(comp_dir)
        st.error(f"This comparison has no audio ({st_.status}). " + (st_.detail or "")
                 + "\n\nLast log lines:\n\n" + "\n".join(jobs.log_tail(comp_dir, 6)))
        return
    req, loud = meta["request"], meta["loudness"]
    st.caption(f"“{req['prompt'].get('caption', '')}” · {req['prompt'].get('duration')} s · seed {req['seed']} · "
               f"{req['steps']} steps · shift {req['shift']} · guidance {req['guidance']} · loudness-matched "
               f"to {loud['target']:.1f} {'LUFS' if loud['method'] == 'lufs' else 'dBFS RMS'} "
               f"(spread {loud['spread_db']:.2f} dB)")
    vote = votes.latest_votes(run_dir).get(comp_dir.name)
    c = st.columns([1, 1, 2])
    blind = c[0].toggle("Blind", value=True, key="ab_blind", help="Hide which clip is which until you vote.")
    kind = c[1].radio("Picture", ["Spectrogram", "Waveform"], key="ab_picture", horizontal=True)
    hidden = blind and vote is None
    cols = st.columns(len(meta["outputs"]))
    for col, (letter, out) in zip(cols, ab.blind_order(meta)):
        path = comp_dir / out["file"]
        with col:
            st.markdown(f"**{letter}**" if hidden else f"**{letter} · {out['label']}**")
            st.audio(path.read_bytes(), format="audio/wav")
            picture(path, kind, key=f"ab_pic_{comp_dir.name}_{letter}")
            if st.button(f"Prefer {letter}", key=f"ab_vote_{letter}", width="stretch"):
                votes.record_vote(run_dir, comp_dir.name, letter, blind=hidden)
                st.rerun()
            st.download_button("Download", path.read_bytes(), mime="audio/wav", key=f"ab_dl_{letter}",
                               file_name=f"{comp_dir.name}_{letter}.wav" if hidden else out["file"])
    if st.button("No preference", key="ab_vote_none"):
        votes.record_vote(run_dir, comp_dir.name, votes.NO_PREFERENCE, blind=hidden)
        st.rerun()
    if vote is not None:
        mapping = ", ".join(f"{k} = {v}" for k, v in ab.reveal(meta).items())
        chose = "no preference" if vote["choice"] == votes.NO_PREFERENCE else f"{vote['choice']}"
        st.success(f"Your vote: {chose}. Revealed: {mapping}.")


def step_samples(run_dir: Path) -> None:
    """The run's training previews by step, each with a player (Runs page tab)."""
    found = previews.step_samples(run_dir)
    if not found:
        comps = ab.list_comparisons(run_dir)
        st.caption("No training previews: turn them on under Train → Advanced (preview every N steps), "
                   "or press “Sample now” while a run trains."
                   + (f" This run has {len(comps)} A/B comparison(s); listen to them on the A/B page." if comps else ""))
        if comps:
            st.page_link("app_pages/ab.py", label="Open A/B listening", icon="🎧")
        return
    for step, wav in found:
        c = st.columns([1, 5])
        c[0].markdown(f"**step {step}**")
        c[1].audio(wav.read_bytes(), format="audio/wav")
    st.page_link("app_pages/ab.py", label="Compare the adapter with the base on the A/B page", icon="🎧")
