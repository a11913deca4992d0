"""A 200,000-step run renders without sending 200,000 points to the browser."""
from state.series import RunSeries
from ui import charts


def big_series(n=200_000):
    s = RunSeries()
    s.add([{"type": "step", "step": i, "loss": 1.0 + (25.0 if i == 150_001 else 0.0) + 1.0 / (i + 1), "lr": 1e-4,
            "rss_mb": 900.0, "gpu_mem_alloc_mb": 8000.0} for i in range(n)])
    s.add([{"type": "resumed", "step": 100_000}, {"type": "sample", "step": 50_000}])
    return s


def test_charts_downsample_and_keep_the_spike():
    s = big_series()
    fig = charts.loss_figure(s, log_y=True)
    sent = sum(len(tr.x) for tr in fig.data if tr.x is not None and tr.x[0] is not None)
    assert sent <= 2 * charts.MAX_POINTS
    raw = fig.data[0]
    assert max(raw.y) > 25 and 150_001 in set(raw.x)
    assert fig.layout.yaxis.type == "log"
    names = {tr.name for tr in fig.data}
    assert {"loss", "smoothed", "resumed", "preview"} <= names
    for f in (charts.lr_figure(s), charts.memory_figure(s)):
        assert all(len(tr.x) <= charts.MAX_POINTS for tr in f.data)


def test_compare_overlays_runs():
    a, b = big_series(5000), big_series(3000)
    fig = charts.compare_figure({"a": a, "b": b})
    assert [tr.name for tr in fig.data] == ["a", "b"]


def test_memory_chart_draws_the_predicted_peak_beside_the_measured_one():
    s = RunSeries()
    s.add([{"type": "start", "predicted_peak_mb": 9000.0},
           *({"type": "step", "step": i, "gpu_mem_peak_mb": 8500.0 + i} for i in range(5))])
    fig = charts.memory_figure(s)
    [line] = [sh for sh in fig.layout.shapes if sh.type == "line"]
    assert abs(line.y0 - 9000.0 / 1024) < 1e-9 and fig.layout.yaxis.range[1] > 9000.0 / 1024
    assert fig.layout.annotations[0].text == "predicted peak"
    cpu = RunSeries()
    cpu.add([{"type": "start", "predicted_peak_mb": None}, {"type": "step", "step": 0, "rss_mb": 700.0}])
    assert not charts.memory_figure(cpu).layout.shapes  # no prediction on CPU
