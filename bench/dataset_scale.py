"""The Dataset page at scale: a 20,000-file dataset and a 100,000-row CSV import.

Prints, in one run: the time to create the dataset (first scan: probe + hash every file), a rescan
of the unchanged folder, the Dataset page's first render and the median of its reruns (driven by
Streamlit's AppTest, in this process), a label save, and a 100k-row CSV import with the page
rendering its report. Files are short 8 kHz tones (4 KB each) so the bench fits on a small disk;
the probe's per-file cost is dominated by opening, hashing and decoding headers, not by length.

    .venv/bin/python bench/dataset_scale.py [--files 20000] [--csv-rows 100000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def make_folder(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    t = np.arange(2000) / 8000
    for i in range(n):
        sub = folder / f"disc{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        tone = (0.3 * np.sin(2 * np.pi * (100 + i % 5000) * t) * (1 + i // 5000)).astype("float32") / 4
        sf.write(sub / f"track{i:05d}.wav", tone, 8000, subtype="PCM_16")
        if i % 2 == 0:
            (sub / f"track{i:05d}.json").write_text(f'{{"caption": "tone {i}", "bpm": {60 + i % 100}}}')


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--csv-rows", type=int, default=100_000)
    ap.add_argument("--reruns", type=int, default=7)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="acelora-bench-"))
    os.environ["ACELORA_HOME"] = str(tmp / "ws")
    os.environ["ACELORA_MODEL"] = "bench/not-the-demo-model"  # no demo-model build job
    try:
        from streamlit.testing.v1 import AppTest

        from state.dataset import manifest
        from state.dataset.csv_import import import_csv

        music = tmp / "music"
        _, make_s = timed(lambda: make_folder(music, args.files))
        print(f"files: {args.files}")
        print(f"write_files_s: {make_s:.1f}")
        ds = manifest.create_dataset("big", music)
        result, create_s = timed(lambda: manifest.scan(ds))
        print(f"create_scan_s: {create_s:.2f}")
        print(f"create_per_file_ms: {create_s / args.files * 1000:.2f}")
        _, rescan_s = timed(lambda: manifest.scan(ds))
        print(f"rescan_unchanged_s: {rescan_s:.2f}")

        at = AppTest.from_file(APP, default_timeout=600)
        at.session_state["dataset_name"] = "big"
        _, first_s = timed(at.run)
        assert not at.exception, [e.value for e in at.exception]
        print(f"page_first_render_s: {first_s:.2f}")
        reruns = []
        for _ in range(args.reruns):
            _, s = timed(at.run)
            assert not at.exception
            reruns.append(s)
        print(f"page_rerun_median_s: {statistics.median(reruns):.3f}")
        print(f"page_rerun_max_s: {max(reruns):.3f}")
        rows_shown = len(at.data_editor[0].value) if at.data_editor else 0
        print(f"table_rows_sent: {rows_shown}")

        first_id = result.rows[0]["id"]
        _, save_s = timed(lambda: manifest.save_labels(ds, {first_id: {"caption": "saved"}}))
        print(f"save_one_label_s: {save_s:.3f}")

        lines = ["file,caption,bpm"] + [f"track{i:05d}.wav,row {i},{'fast' if i % 3 else 90}"
                                        for i in range(args.csv_rows)]
        report, csv_s = timed(lambda: import_csv(ds, "\n".join(lines).encode(), "labels.csv"))
        print(f"csv_rows: {args.csv_rows}")
        print(f"csv_import_s: {csv_s:.2f}")
        print(f"csv_problems: {report.problem_count}")
        print(f"csv_problem_lines_kept: {len(report.problems)}")
        at.session_state["data_csv_report"] = (ds.name, "labels.csv", report)  # (dataset, file, report), as the page keeps it
        _, csv_page_s = timed(at.run)
        assert not at.exception
        print(f"page_with_csv_report_s: {csv_page_s:.2f}")
        print(f"page_warnings_rendered: {len(at.warning)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
