"""A run's events folded into plottable series, incrementally, plus spike-keeping downsampling.

`RunSeries.add(events)` takes only the new events of a refresh (from `EventTail.read_new`), so a
1M-line events file is parsed once and each refresh costs only what was appended. Charts then
ask for at most a few thousand points: `minmax_downsample` keeps each bucket's min and max, so a
single loss spike among 200,000 steps still shows.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np

STEP_FIELDS = ("loss", "lr", "grad_norm", "samples_per_s", "elapsed_s", "eta_s", "gpu_mem_alloc_mb",
               "gpu_mem_reserved_mb", "gpu_mem_peak_mb", "rss_mb", "epoch")


@dataclass
class RunSeries:
    # array('d') keeps 8 bytes a value (a list of floats costs ~32): a 1M-step run stays small
    steps: array = field(default_factory=lambda: array("d"))
    cols: dict = field(default_factory=lambda: {k: array("d") for k in STEP_FIELDS})
    t: array = field(default_factory=lambda: array("d"))
    start: dict | None = None
    end: dict | None = None
    phase: dict | None = None  # latest phase event
    resumed_at: list = field(default_factory=list)  # steps where a resume happened
    sample_events: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    validations: list = field(default_factory=list)  # `validation` events: step, loss, best
    # one entry per launch of the job: begin (first event), work (left the queue), end (unix s)
    launches: list = field(default_factory=list)
    last_t: float | None = None  # time of the newest event of any type
    warnings: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    last_step: dict | None = None
    n_events: int = 0
    _arrays: dict = field(default_factory=dict, repr=False)  # name -> float array of the list's prefix

    def add(self, events: list[dict]) -> None:
        for e in events:
            self.n_events += 1
            kind = e.get("type")
            self._launch(kind, e.get("t"))
            if kind == "step":
                self.steps.append(_num(e.get("step")))
                self.t.append(_num(e.get("t")))
                for k in STEP_FIELDS:
                    self.cols[k].append(_num(e.get(k)))
                self.last_step = e
            elif kind == "phase":
                self.phase = e
            elif kind == "start":
                self.start, self.end = e, None
            elif kind == "end":
                self.end = e
            elif kind == "resumed":
                self.resumed_at.append(e.get("step"))
            elif kind == "sample":
                self.sample_events.append(e)
            elif kind == "checkpoint":
                self.checkpoints.append(e)
            elif kind == "warning":
                self.warnings.append(e)
            elif kind == "error":
                self.errors.append(e)
            elif kind == "validation":
                self.validations.append(e)

    def _launch(self, kind: str | None, t) -> None:
        # A launch starts with the first event after an `end` (or the file's first); `queued` is
        # the only event a job writes while it waits, so the first other event marks the start of work.
        if not isinstance(t, (int, float)):
            return
        self.last_t = float(t)
        if not self.launches or self.launches[-1]["end"] is not None:
            self.launches.append({"begin": float(t), "work": None, "end": None, "queued": False})
        cur = self.launches[-1]
        if kind == "queued" and cur["work"] is None:
            cur["queued"] = True
        elif cur["work"] is None:
            cur["work"] = float(t)
        if kind == "end":
            cur["end"] = float(t)

    def array(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) as float arrays, rows with a missing value dropped."""
        x = self._as_array("step", self.steps)
        y = self._as_array(name, self.cols[name])
        ok = np.isfinite(x) & np.isfinite(y)
        return x[ok], y[ok]

    def _as_array(self, name: str, values: array) -> np.ndarray:
        # Convert only what was appended since the last call: a refresh of a long run stays cheap.
        # The copy matters: a numpy view would pin the array's buffer and block further appends.
        have = self._arrays.get(name, np.empty(0))
        if len(have) < len(values):
            new = np.frombuffer(values, dtype=np.float64, offset=len(have) * values.itemsize).copy()
            have = np.concatenate([have, new])
            self._arrays[name] = have
        return have

    @property
    def best_loss(self) -> float | None:
        _, y = self.array("loss")
        return float(y.min()) if y.size else None

    @property
    def last_loss(self) -> float | None:
        _, y = self.array("loss")
        return float(y[-1]) if y.size else None


@dataclass
class Timing:
    """Where a run's wall time went, for one job folder. Never negative."""
    queued_s: float | None  # this launch's wait behind another run; None when it did not queue
    run_s: float            # working time (load, preprocess, train, save) summed over every launch
    launch_s: float         # working time of the latest launch alone
    launches: int           # how many times the job was started (1 + resumes)


def timing(s: RunSeries, started_at: float | None, now: float, active: bool, queues: bool = False) -> Timing:
    """Queue wait and working time from the events, plus job.json's `started_at` for the latest launch.

    `started_at` covers what events cannot: a launch that has written nothing yet (a resume that is
    still importing: the old `end` is the newest event, which made "elapsed" negative), and the
    seconds between the process start and its first event. `queues`: the latest launch was started
    with --after, so until it writes something it is waiting, not working.
    """
    launches = [dict(x) for x in s.launches]
    if started_at is not None and (not launches or (launches[-1]["end"] is not None
                                                    and started_at > launches[-1]["end"])):
        launches.append({"begin": started_at, "work": None if queues else started_at, "end": None,
                         "queued": queues})
    elif started_at is not None and started_at < launches[-1]["begin"]:
        cur = launches[-1]
        if cur["work"] == cur["begin"]:  # it was working from its process start, before its first event
            cur["work"] = started_at
        cur["begin"] = started_at
    total, launch_s, queued = 0.0, 0.0, None
    for i, la in enumerate(launches):
        latest = i == len(launches) - 1
        stop = la["end"] if la["end"] is not None else (now if latest and active else (s.last_t or la["begin"]))
        if latest and la.get("queued"):
            queued = max(0.0, (la["work"] if la["work"] is not None else stop) - la["begin"])
        launch_s = max(0.0, stop - la["work"]) if la["work"] is not None else 0.0
        total += launch_s
    return Timing(queued, total, launch_s, len(launches))


def follow(tail, series: "RunSeries", chunk_bytes: int = 8 << 20) -> int:
    """Fold everything new in `tail` into `series`, a chunk at a time, so the first read of a huge
    events file never holds more than one chunk's worth of parsed dicts. Returns events added."""
    added = 0
    while new := tail.read_new(max_bytes=chunk_bytes):
        series.add(new)
        added += len(new)
    return added


def _num(v) -> float:
    # NaN for missing values keeps every column a plain float list: np.asarray on it is fast
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def minmax_downsample(x: np.ndarray, y: np.ndarray, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points: per bucket, the min and the max in their original order."""
    n = len(x)
    if n <= max_points:
        return x, y
    size = int(np.ceil(n / max(1, max_points // 2)))
    buckets = int(np.ceil(n / size))  # so only the last bucket is padded, and never entirely
    pad = buckets * size - n
    yp = np.concatenate([y, np.full(pad, np.nan)]).reshape(buckets, size)
    lo = np.nanargmin(yp, axis=1)
    hi = np.nanargmax(yp, axis=1)
    base = np.arange(buckets) * size
    idx = np.unique(np.concatenate([base + lo, base + hi]))
    idx = idx[idx < n]
    return x[idx], y[idx]


def ema(y: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Exponential moving average with bias correction (the start is not dragged towards 0)."""
    if y.size == 0:
        return y
    import pandas as pd  # only the dashboard needs this, and it already has pandas

    return pd.Series(y).ewm(alpha=alpha, adjust=True).mean().to_numpy()
