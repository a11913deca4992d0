"""Plotly figures for a run's series. Every trace is downsampled, so size never reaches the browser.

Traces are SVG `go.Scatter`, not `go.Scattergl`: each WebGL trace takes one of the browser's few
WebGL contexts, and a live view that redraws every two seconds ran out of them ("Too many active
WebGL contexts"). A few thousand downsampled points draw fine as SVG.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from state.series import RunSeries, ema, minmax_downsample

MAX_POINTS = 2000
LAYOUT = dict(margin=dict(l=10, r=10, t=30, b=10), height=280, legend=dict(orientation="h", y=1.12),
              hovermode="x unified")
# distinct hues for runs drawn side by side (plotly's default sequence starts with three blues and purples)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#7f7f7f")
MEMORY = (("gpu_mem_alloc_mb", "GPU allocated"), ("gpu_mem_reserved_mb", "GPU reserved"),
          ("gpu_mem_peak_mb", "GPU peak"))


def _line(x: np.ndarray, y: np.ndarray, name: str, **kw) -> go.Scatter:
    x, y = minmax_downsample(x, y, MAX_POINTS)
    return go.Scatter(x=x, y=y, name=name, mode="lines", **kw)


def loss_figure(s: RunSeries, log_y: bool = False, smoothing: float = 0.05, title: str = "Loss") -> go.Figure:
    x, y = s.array("loss")
    fig = go.Figure(layout=dict(title=title, **LAYOUT))
    if y.size:
        fig.add_trace(_line(x, y, "loss", line=dict(width=1, color="rgba(99,110,250,0.5)")))
        fig.add_trace(_line(x, ema(y, smoothing), "smoothed", line=dict(width=2, color="#636efa")))
    vx, vy = validation_points(s)
    if vx.size:
        fig.add_trace(go.Scatter(x=vx, y=vy, name="validation", mode="lines+markers",
                                 line=dict(width=2, color="#ff7f0e"), marker=dict(size=6)))
    for step in s.resumed_at:
        fig.add_vline(x=step, line=dict(color="orange", dash="dash", width=1))
    for e in s.sample_events[-50:]:
        fig.add_vline(x=e.get("step", 0), line=dict(color="green", dash="dot", width=1))
    if s.resumed_at:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="resumed",
                                 line=dict(color="orange", dash="dash")))
    if s.sample_events:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="preview",
                                 line=dict(color="green", dash="dot")))
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_xaxes(title_text="step")
    return fig


def validation_points(s: RunSeries) -> tuple[np.ndarray, np.ndarray]:
    pts = [(e["step"], e["loss"]) for e in s.validations
           if isinstance(e.get("step"), (int, float)) and isinstance(e.get("loss"), (int, float))]
    if not pts:
        return np.empty(0), np.empty(0)
    x, y = np.asarray(pts, dtype=float).T
    return x, y


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
    """GPU memory (allocated, reserved, peak) when the run is on a GPU, else the process's RSS on CPU.

    The y axis starts at 0 and is in GB past 2 GB: plotly zooms a flat line to its own wiggle, which
    made a steady 2,000 MB look like a spike over a 0.3 MB range.
    """
    gpu = [(name, *s.array(key)) for key, name in MEMORY if s.array(key)[1].size]
    traces = gpu or [("process RAM (RSS)", *s.array("rss_mb"))]
    top = max((float(y.max()) for _, _, y in traces if y.size), default=0.0)
    predicted = (s.start or {}).get("predicted_peak_mb") if gpu else None
    predicted = float(predicted) if isinstance(predicted, (int, float)) and not isinstance(predicted, bool) else None
    top = max(top, predicted or 0.0)
    unit, div = ("GB", 1024.0) if top >= 2048 else ("MB", 1.0)
    title = f"GPU memory ({unit})" if gpu else f"Process memory, RSS ({unit}): CPU run, no GPU memory"
    fig = go.Figure(layout=dict(title=title, **LAYOUT))
    for name, x, y in traces:
        if y.size:
            fig.add_trace(_line(x, y / div, name))
    if predicted:  # the preflight's fake-tensor peak, so a wrong estimate shows at a glance
        fig.add_hline(y=predicted / div, line=dict(dash="dot", width=1), annotation_text="predicted peak",
                      annotation_position="top left")
    fig.update_yaxes(rangemode="tozero", range=[0, top / div * 1.15] if top > 0 else None,
                     tickformat=".1f" if unit == "GB" else ",.0f")
    fig.update_xaxes(title_text="step")
    return fig


def compare_figure(series: dict[str, RunSeries], log_y: bool = False, smoothing: float = 0.05) -> go.Figure:
    fig = go.Figure(layout=dict(title="Loss (smoothed)", **LAYOUT))
    for i, (name, s) in enumerate(series.items()):
        x, y = s.array("loss")
        if y.size:
            fig.add_trace(_line(x, ema(y, smoothing), name, line=dict(width=2, color=PALETTE[i % len(PALETTE)])))
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_xaxes(title_text="step")
    return fig
