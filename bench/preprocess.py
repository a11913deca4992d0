"""Preprocessing cost on the tiny model: cold (VAE + text encoder) vs warm (cache only).

    .venv/bin/python bench/preprocess.py [--tracks 10] [--seconds 30]

Runs in a throwaway workspace; target: warm <= 5% of cold.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="acelora-bench-") as home:
        os.environ["ACELORA_HOME"] = home
        import numpy as np
        import soundfile as sf
        import torch

        from trainer.dataset.preprocess import preprocess_rows
        from trainer.model.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline()
        rng = np.random.default_rng(0)
        rows = []
        for i in range(args.tracks):
            n = int(args.seconds * 44100)
            t = np.arange(n) / 44100
            x = 0.3 * np.sin(2 * np.pi * (110 * (i + 1)) * t)[:, None] + 0.05 * rng.standard_normal((n, 2))
            path = Path(home) / f"track{i:02d}.wav"
            sf.write(str(path), x.astype(np.float32), 44100, subtype="PCM_16")
            rows.append({"id": path.stem, "audio": str(path), "caption": f"test track {i}", "bpm": 100 + i})

        t0 = time.perf_counter()
        cold = preprocess_rows(pipe, rows, "bench-tiny")
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = preprocess_rows(pipe, rows, "bench-tiny")
        t_warm = time.perf_counter() - t0
        assert all(torch.equal(a["latents"], b["latents"]) for a, b in zip(cold, warm))

    frames = sum(i["frames"] for i in cold)
    print(f"tracks: {args.tracks} x {args.seconds:g} s at 44.1 kHz -> {frames} latent frames "
          f"(torch threads: {torch.get_num_threads()})")
    print(f"cold (decode + resample + VAE + text): {t_cold:8.3f} s")
    print(f"warm (cache hits only):                {t_warm:8.3f} s")
    print(f"warm / cold:                           {100 * t_warm / t_cold:8.2f} %  (target <= 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
