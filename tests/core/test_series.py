import numpy as np

from state.series import RunSeries, ema, minmax_downsample, timing


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


# ---- where a run's time went (series.timing) ---------------------------------------------------

def test_timing_right_after_a_resume_is_never_negative():
    """A resume's process is importing: the newest event is still the old launch's `end`."""
    s = RunSeries()
    s.add([{"type": "phase", "t": 100.0}, {"type": "start", "t": 110.0}, {"type": "step", "step": 5, "t": 150.0},
           {"type": "end", "status": "stopped", "t": 160.0}])
    tm = timing(s, started_at=400.0, now=420.0, active=True)
    assert (tm.run_s, tm.launch_s, tm.queued_s, tm.launches) == (80.0, 20.0, None, 2)
    s.add([{"type": "phase", "t": 405.0}, {"type": "start", "t": 410.0}])
    assert timing(s, started_at=400.0, now=430.0, active=True).run_s == 90.0  # 60 + 30, from its process start


def test_timing_keeps_the_queue_out_of_the_working_time():
    s = RunSeries()
    s.add([{"type": "queued", "after": "run-a", "t": 12.0}])
    tm = timing(s, started_at=10.0, now=300.0, active=True, queues=True)
    assert (tm.queued_s, tm.run_s) == (290.0, 0.0)
    s.add([{"type": "phase", "name": "load", "t": 301.0}, {"type": "start", "t": 310.0},
           {"type": "step", "step": 1, "t": 330.0}, {"type": "end", "status": "completed", "t": 354.0}])
    tm = timing(s, started_at=10.0, now=999.0, active=False, queues=True)
    assert (tm.queued_s, tm.run_s) == (291.0, 53.0)


def test_timing_of_a_job_that_died_without_an_end_stops_at_its_last_event():
    s = RunSeries()
    s.add([{"type": "phase", "t": 0.0}, {"type": "step", "step": 1, "t": 30.0}])
    assert timing(s, started_at=0.0, now=5000.0, active=False).run_s == 30.0
