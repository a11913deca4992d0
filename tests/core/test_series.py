import numpy as np

from state.series import RunSeries, ema, minmax_downsample


def test_downsample_keeps_spikes_and_bounds_points():
    x = np.arange(200_000, dtype=float)
    y = np.full_like(x, 1.0)
    y[123_457] = 50.0  # one spike
    y[7] = -3.0  # one dip
    dx, dy = minmax_downsample(x, y, 2000)
    assert len(dx) <= 2000
    assert dy.max() == 50.0 and dy.min() == -3.0
    assert 123_457 in dx and 7 in dx
    assert np.all(np.diff(dx) > 0)  # still in step order


def test_downsample_small_input_untouched_and_ragged_sizes():
    x = np.arange(10.0)
    assert minmax_downsample(x, x, 2000)[0] is x
    for n in (2001, 2999, 3001, 10_007):
        xs = np.arange(float(n))
        dx, dy = minmax_downsample(xs, np.sin(xs), 2000)
        assert 0 < len(dx) <= 2000 and np.isfinite(dy).all()


def test_series_folds_events_and_drops_missing_values():
    s = RunSeries()
    s.add([{"type": "start", "total_steps": 10, "t": 0},
           {"type": "step", "step": 1, "loss": 2.0, "lr": 1e-5, "gpu_mem_alloc_mb": None},
           {"type": "resumed", "step": 1},
           {"type": "step", "step": 2, "loss": None, "lr": 2e-5},
           {"type": "step", "step": 3, "loss": 1.0, "lr": 3e-5},
           {"type": "sample", "step": 3, "path": "x.wav"},
           {"type": "error", "message": "boom", "hint": "h"},
           {"type": "end", "status": "failed"}])
    x, y = s.array("loss")
    assert list(x) == [1.0, 3.0] and list(y) == [2.0, 1.0]
    assert s.array("gpu_mem_alloc_mb")[1].size == 0
    assert (s.best_loss, s.last_loss) == (1.0, 1.0)
    assert s.resumed_at == [1] and len(s.sample_events) == 1 and s.end["status"] == "failed"
    s.add([{"type": "step", "step": 4, "loss": 0.5}])  # arrays extend incrementally
    assert list(s.array("loss")[1]) == [2.0, 1.0, 0.5]


def test_ema_bias_corrected():
    y = np.array([10.0, 10.0, 10.0])
    assert np.allclose(ema(y, 0.1), 10.0)
