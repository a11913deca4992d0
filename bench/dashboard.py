"""Dashboard cost on long runs: refresh tail reads and chart builds at 1k, 100k and 1M events.

Prints, per size: the time to read the new tail after appending 100 lines (must not grow with the
file), the time to build the three charts on a refresh, the cold first read, and at the end the
process's peak RSS and whether torch was imported (it must not be).

    .venv/bin/python bench/dashboard.py
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from state.events import EventTail  # noqa: E402
from state.series import RunSeries, follow  # noqa: E402
from ui import charts  # noqa: E402


def write_events(path: Path, start: int, n: int) -> None:
    with open(path, "a") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"t": 1.7e9 + i, "type": "step", "step": i, "loss": 1.0 / (1 + i * 1e-4),
                                "lr": 1e-4, "grad_norm": 0.5, "samples_per_s": 3.2, "elapsed_s": i * 0.3,
                                "eta_s": 100.0, "gpu_mem_alloc_mb": 9000.0, "gpu_mem_reserved_mb": 11000.0,
                                "gpu_mem_peak_mb": 12000.0, "rss_mb": 2100.0}) + "\n")


def build_charts(s: RunSeries) -> None:
    charts.loss_figure(s)
    charts.lr_figure(s)
    charts.memory_figure(s)


def main() -> None:
    import pandas  # noqa: F401  - Streamlit has it loaded already; keep its import out of the timings

    print(f"{'events':>9} {'cold read s':>12} {'tail read ms':>13} {'charts s':>9} {'points sent':>12}")
    tail_times = []
    for n in (1_000, 100_000, 1_000_000):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "events.jsonl"
            write_events(path, 0, n)
            tail, series = EventTail(path), RunSeries()
            t0 = time.perf_counter()
            follow(tail, series)
            cold = time.perf_counter() - t0
            build_charts(series)  # first build converts the columns once
            samples = []
            for k in range(21):  # median of 21 refreshes: one read is ~1 ms, so noise matters
                write_events(path, n + 100 * k, 100)
                t0 = time.perf_counter()
                new = tail.read_new()
                series.add(new)  # the refresh path: one small read, as the live view does
                samples.append((time.perf_counter() - t0) * 1000)
                assert len(new) == 100
            tail_ms = sorted(samples)[len(samples) // 2]
            t0 = time.perf_counter()
            fig = charts.loss_figure(series)
            charts.lr_figure(series)
            charts.memory_figure(series)
            chart_s = time.perf_counter() - t0
            points = sum(len(tr.x) for tr in fig.data if tr.x is not None)
            tail_times.append(tail_ms)
            print(f"{n:>9} {cold:>12.2f} {tail_ms:>13.2f} {chart_s:>9.3f} {points:>12}")
    print(f"tail read ratio 1M/1k: {tail_times[-1] / tail_times[0]:.2f} (flat = does not grow with file size)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB; torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
