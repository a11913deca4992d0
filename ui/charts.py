"""Plotly figures for a run's series. Every trace is downsampled, so size never reaches the browser."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from state.series import RunSeries, ema, minmax_downsample

MAX_POINTS = 2000
LAYOUT = dict(margin=dict(l=10, r=10, t=30, b=10), height=280, legend=dict(orientation="h", y=1.12),
              hovermode="x unified")


def _line(x: np.ndarray, y: np.ndarray, name: str, **kw) -> go.Scattergl:
    x, y = minmax_downsample(x, y, MAX_POINTS)
    return go.Scattergl(x=x, y=y, name=name, mode="lines", **kw)


def loss_figure(s: RunSeries, log_y: bool = False, smoothing: float = 0.05, title: str = "Loss") -> go.Figure:
    x, y = s.array("loss")
    fig = go.Figure(layout=dict(title=title, **LAYOUT))
    if y.size:
        fig.add_trace(_line(x, y, "loss", line=dict(width=1, color="rgba(99,110,250,0.35)")))
        fig.add_trace(_line(x, ema(y, smoothing), "smoothed", line=dict(width=2, color="#636efa")))
    for step in s.resumed_at:
        fig.add_vline(x=step, line=dict(color="orange", dash="dash", width=1))
    for e in s.sample_events[-50:]:
        fig.add_vline(x=e.get("step", 0), line=dict(color="green", dash="dot", width=1))
    if s.resumed_at:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="resumed",
                                 line=dict(color="orange", dash="dash")))
    if s.sample_events:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="sample",
                                 line=dict(color="green", dash="dot")))
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_xaxes(title_text="step")
    return fig


def lr_figure(s: RunSeries) -> go.Figure:
    fig = go.Figure(layout=dict(title="Learning rate", **LAYOUT))
    x, y = s.array("lr")
    if y.size:
        fig.add_trace(_line(x, y, "lr"))
        if y.min() == y.max():  # plotly pads a flat line by ±1, which would draw 1e-4 as "0"
            fig.update_yaxes(range=[0, 2 * y.max() if y.max() > 0 else 1])
    fig.update_yaxes(exponentformat="e", tickformat=".1e")
    fig.update_xaxes(title_text="step")
    return fig


def memory_figure(s: RunSeries) -> go.Figure:
    fig = go.Figure(layout=dict(title="Memory (MB)", **LAYOUT))
    for key, name in (("gpu_mem_alloc_mb", "GPU allocated"), ("gpu_mem_reserved_mb", "GPU reserved"),
                      ("gpu_mem_peak_mb", "GPU peak"), ("rss_mb", "process RAM")):
        x, y = s.array(key)
        if y.size:
            fig.add_trace(_line(x, y, name))
    fig.update_xaxes(title_text="step")
    return fig


def compare_figure(series: dict[str, RunSeries], log_y: bool = False, smoothing: float = 0.05) -> go.Figure:
    fig = go.Figure(layout=dict(title="Loss (smoothed)", **LAYOUT))
    for name, s in series.items():
        x, y = s.array("loss")
        if y.size:
            fig.add_trace(_line(x, ema(y, smoothing), name))
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_xaxes(title_text="step")
    return fig
