"""Helpers for the trainer tests (tests/test_train_*.py): a tiny dataset, configs, running jobs, reading events."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np

from state import events
from state.fsutil import write_json

TRACKS = [(220.0, 2.0), (330.0, 2.5), (440.0, 3.0)]  # (Hz, seconds): three short tones


def write_dataset(root: Path) -> Path:
    """Three stereo 48 kHz tones with captions and a manifest; returns the manifest path."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (freq, sec) in enumerate(TRACKS):
        t = np.arange(int(sec * 48000)) / 48000
        x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        path = root / f"tone{i}.wav"
        sf.write(str(path), np.stack([x, x], 1), 48000, subtype="FLOAT")
        rows.append({"id": path.name, "audio": str(path), "caption": f"a pure tone at {int(freq)} Hz",
                     "lyrics": "", "bpm": 120, "status": "ok"})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


class Kit:
    """What a trainer test needs: model folder, manifest, and ways to write configs and run jobs."""

    def __init__(self, home: Path, model_dir: Path, manifest: Path):
        self.home, self.model_dir, self.manifest = home, model_dir, manifest

    def config(self, path: Path, **overrides) -> Path:
        cfg = {"model_id": str(self.model_dir), "manifest": str(self.manifest), "rank": 4, "alpha": 4.0,
               "max_steps": 12, "clip_seconds": 2.0, "checkpoint_every": 0, "gradient_checkpointing": False,
               "learning_rate": 1e-3, "device": "cpu", "sample_every": 0, **overrides}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, cfg)
        return path

    def run_dir(self, name: str, **overrides) -> Path:
        d = self.home / "lora_output" / name
        self.config(d / "config.json", **overrides)
        return d

    def run(self, job_dir: Path, *extra: str) -> int:
        """trainer/run.py train in this process (so tests can monkeypatch), signal handlers restored after."""
        from trainer import run

        saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return run.main(["train", "--job-dir", str(job_dir), *extra])
        finally:
            for s, h in saved.items():
                signal.signal(s, h)


def read_events(job_dir: Path, type_: str | None = None) -> list[dict]:
    evs = events.read_all(Path(job_dir) / events.EVENTS_FILE)
    return [e for e in evs if type_ is None or e["type"] == type_]


def end_of(job_dir: Path) -> dict:
    ends = read_events(job_dir, "end")
    assert ends, f"no end event in {job_dir}: {read_events(job_dir)[-5:]}"
    return ends[-1]


def wait_for(pred, timeout: float = 60.0, every: float = 0.05) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(every)
    return False


def adapter_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def structured_latents(monkeypatch):
    """Replace each track's latents with a strong, learnable per-track pattern.

    The tiny VAE's latents of a pure tone are small next to the unit-variance noise, so their
    flow-matching loss sits near its noise floor from step 1; a large fixed pattern gives the
    adapter something to learn that the loss can show.
    """
    import torch

    from trainer.dataset import preprocess

    real = preprocess.preprocess_rows

    def with_pattern(pipe, rows, model_id, **kw):
        out = real(pipe, rows, model_id, **kw)
        for k, tr in enumerate(out):
            T, D = tr["latents"].shape
            t = torch.arange(T).float().unsqueeze(1)
            tr["latents"] = 3.0 * torch.sin(0.2 * (k + 1) * t + torch.arange(D).float())
        return out

    monkeypatch.setattr(preprocess, "preprocess_rows", with_pattern)
