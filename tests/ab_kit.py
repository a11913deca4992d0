"""Helpers for the A/B tests (tests/test_ab_*.py): a finished run with real adapters, built without training."""
from __future__ import annotations

import json
import time
from pathlib import Path

from state import events
from state.fsutil import write_json

CAPTION = "a pure tone at 220 Hz"


def build_run(run_dir: Path, model_dir: Path) -> Path:
    """A completed-looking run: config, dataset snapshot, two real checkpoints and final/ in both formats.

    The LoRA B matrices are set to seeded random values (training would start them at zero and move
    them slowly), so an adapter audibly changes the tiny model's output. final/ holds the same tensors
    as checkpoints/step-000020, and alpha (16) is neither the rank nor peft's default (8), so a loader that ignores alpha sounds different.
    """
    import torch

    from state.train.config import TrainConfig
    from trainer.model.load import load_pipeline
    from trainer.train.adapter import add_lora
    from trainer.train.checkpoint import save_checkpoint
    from trainer.train.export import export_final

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(model_id=str(model_dir), manifest="", rank=4, alpha=16.0, device="cpu", optimizer="adamw")
    pipe = load_pipeline(model_dir, device="cpu", dtype=torch.float32)
    params = add_lora(pipe.transformer, cfg)
    opt = torch.optim.AdamW(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    g = torch.Generator().manual_seed(0)
    for step in (10, 20):
        with torch.no_grad():
            for name, p in pipe.transformer.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.3 * torch.randn(p.shape, generator=g))
        save_checkpoint(run_dir, step, 1.0, pipe.transformer, opt, sched, cfg, keep_last=5)
    export_final(run_dir, pipe.transformer, cfg, steps=20, dataset_size=1, model_dir=str(model_dir))
    write_json(run_dir / "config.json", cfg.to_dict())
    row = {"id": "tone0.wav", "audio": "tone0.wav", "caption": CAPTION, "lyrics": "[Instrumental]", "bpm": 120,
           "keyscale": "A minor", "timesignature": "4", "vocal_language": "unknown", "duration": 2.0}
    (run_dir / "dataset.jsonl").write_text(json.dumps(row) + "\n")
    write_json(run_dir / "job.json", {"kind": "train", "argv": [], "pid": None, "create_time": None,
                                      "started_at": time.time() - 60})
    events.append_event(run_dir, "start", total_steps=20)
    events.append_event(run_dir, "end", status="completed", elapsed_s=1.0)
    return run_dir


def run_job(kind: str, job_dir: Path) -> int:
    """trainer/run.py KIND in this process (signal handlers restored after)."""
    import signal

    from trainer import run

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return run.main([kind, "--job-dir", str(job_dir)])
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def request(run_dir: Path, **over) -> dict:
    """A small, fast request: 2 s, 4 steps, base vs final at scale 1."""
    req = {"run_id": run_dir.name, "mode": "base-vs-adapter", "sources": [str(run_dir / "final")],
           "prompt": {"caption": CAPTION, "duration": 2.0, "bpm": 120, "timesignature": "4/4"},
           "seed": 7, "steps": 4, "shift": 3.0, "guidance": 7.0, "scales": [0, 1.0], "device": "cpu"}
    return {**req, **over}


def prepare(run_dir: Path, name: str, **over) -> Path:
    """A comparison folder with params.json, as state.listen.ab.start_comparison writes it (without launching)."""
    from state.listen import ab

    comp = ab.samples_dir(run_dir) / name
    comp.mkdir(parents=True)
    write_json(comp / ab.PARAMS_FILE, ab.ABRequest.from_dict(request(run_dir, **over)).to_dict())
    return comp
