"""Style distance on the Runs page: per checkpoint next to the validation loss, the best marked, a button
to measure, and a hand-over to the A/B page with the closest checkpoint preselected.

The numbers come from state.listen.style (style.json of the newest measurement, the run's
validation events); this module only draws them.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from state import jobs, paths
from state.events import EVENTS_FILE
from state.listen import ab, style
from state.train import runs
from ui import ab as ab_view

# the legend under the x axis: above the plot it ran into this chart's long title
LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=330,
              legend=dict(orientation="h", y=-0.2, yanchor="top", x=0), hovermode="x unified")
AB_PRESELECT = "ab_preselect"  # session key the A/B page consumes once: {"run": id, "source": folder name}


@st.cache_data(show_spinner=False, max_entries=64)
def _validation(run_dir: str, size: int, mtime: float) -> list[dict]:
    # keyed by the events file's size and mtime: read again only when the run wrote something
    return style.validation_curve(Path(run_dir))


def validation_points(run_dir: Path) -> list[dict]:
    try:
        s = (Path(run_dir) / EVENTS_FILE).stat()
    except FileNotFoundError:
        return []
    return _validation(str(run_dir), s.st_size, s.st_mtime)


def figure(result: dict | None, validation: list[dict], best: dict | None) -> go.Figure:
    """Fréchet distance to the training data per step (left axis) and validation loss (right axis);
    the best checkpoint by validation loss as a dashed line, the adapter closest to the data as a star."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(title="Style distance and validation loss", **LAYOUT)
    if result is not None:
        pts = style.by_step(result)
        base = [p for p in pts if p["key"] == ab.BASE_KEY]
        ckpts = [p for p in pts if p["key"] != ab.BASE_KEY]
        fig.add_trace(go.Scatter(x=[p["step"] for p in ckpts], y=[p["value"] for p in ckpts], mode="lines+markers",
                                 name="style distance (adapter)", text=[p["key"] for p in ckpts],
                                 hovertemplate="%{text}: %{y:.4g}"), secondary_y=False)
        if base:
            fig.add_trace(go.Scatter(x=[0], y=[base[0]["value"]], mode="markers", name="style distance (base)",
                                     marker=dict(symbol="square", size=10, color="gray")), secondary_y=False)
        near = style.closest(result)
        if near is not None:
            fig.add_trace(go.Scatter(x=[near["step"]], y=[near["value"]], mode="markers", name=f"closest: {near['key']}",
                                     marker=dict(symbol="star", size=16, color="gold",
                                                 line=dict(width=1, color="black"))), secondary_y=False)
    if validation:
        fig.add_trace(go.Scatter(x=[v["step"] for v in validation], y=[v["loss"] for v in validation],
                                 mode="lines+markers", name="validation loss", line=dict(color="#ef553b"),
                                 marker=dict(size=4)), secondary_y=True)
    if best is not None:
        # a shape over the plot's full height: add_vline drew nothing when only the right axis had points
        fig.add_shape(type="line", xref="x", yref="paper", x0=best["step"], x1=best["step"], y0=0, y1=1,
                      line=dict(color="#ef553b", dash="dash", width=1))
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"best validation: step {best['step']}",
                                 line=dict(color="#ef553b", dash="dash")), secondary_y=True)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="Fréchet distance (lower = closer)", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="validation loss", secondary_y=True)
    return fig


def panel(run_dir: Path, run_id: str) -> None:
    """The whole section: chart, table, hand-over to A/B, and the measure button."""
    found = style.latest_result(run_dir)
    result = found[1] if found else None
    best = style.best_checkpoint(run_dir)
    validation = validation_points(run_dir)
    if result is not None or validation:
        st.plotly_chart(figure(result, validation, best), key="runs_style_fig")
    if result is None:
        st.caption("Style distance: generate the same short clips with the base model and with each checkpoint "
                   "(latents only, fixed seeds, the run's own prompts) and measure how far each set lies from the "
                   "training data's latents. A distance that falls at later checkpoints says the adapter moved "
                   "the sound toward the data; the training loss alone cannot say that.")
    else:
        st.caption(style.summary_line(result) + f" Measured on {result['reference']['frames']} training frames, "
                   f"{result['sources'][0]['clips']} clips per source ({found[0].name}).")
        near = style.closest(result)
        if near is not None and st.button(f"Listen to {near['key']} on the A/B page", key="runs_style_ab"):
            st.session_state[AB_PRESELECT] = {"run": run_id, "source": Path(near["source"]).name}
            st.switch_page("app_pages/ab.py")
    _measure(run_dir)


def _measure(run_dir: Path) -> None:
    running = [f for f in style.list_measurements(run_dir) if jobs.status(f).active]
    if running:
        ab_view.progress(running[0])
        return
    sources = style.default_sources(run_dir)
    if not sources:
        st.info("No adapter to measure yet: one appears once the run saves a checkpoint or finishes.")
        return
    with st.expander("Measure style distance"):
        picked = st.multiselect("Adapters (the base model is always measured)", sources, default=sources,
                                format_func=ab.source_name, key="runs_style_sources")
        c = st.columns(3)
        prompts = c[0].number_input("Prompts (dataset tracks)", 1, 64, 8, key="runs_style_prompts")
        clips = c[1].number_input("Clips per prompt", 1, 64, 4, key="runs_style_clips")
        seconds = c[2].number_input("Seconds per clip", 1.0, 120.0, 10.0, key="runs_style_seconds")
        device = runs.read_config(run_dir)[0].get("device", "auto")
        try:
            req = style.StyleRequest.from_dict({"sources": [str(p) for p in picked], "prompts": int(prompts),
                                                "clips_per_prompt": int(clips), "seconds": float(seconds),
                                                "device": device})
        except style.StyleError as exc:
            req = None
            st.warning(str(exc))
        if st.button("Measure style distance", key="runs_style_start", disabled=req is None,
                     help="A background job; it waits for the GPU while a training run holds it."):
            style.start_measurement(run_dir, req)
            st.rerun()


def apply_ab_preselect() -> None:
    """On the A/B page, before its widgets: pick the run and adapter the Runs page handed over (once)."""
    pre = st.session_state.pop(AB_PRESELECT, None)
    if not pre:
        return
    match = [p for p in ab.adapter_sources(paths.run_dir(pre["run"])) if p.name == pre["source"]]
    if match:
        st.session_state.update(ab_run=pre["run"], ab_mode=ab.MODES[0], ab_source=match[0])
