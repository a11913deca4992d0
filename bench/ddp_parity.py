"""Does a data-parallel run train the adapter one process trains, and what does a step cost on each?

    .venv/bin/python bench/ddp_parity.py [--steps 40] [--gpus 2] [--device cpu|cuda] [--grad-accum 2]

Both sides run the real job (`trainer/run.py train`) as a subprocess on the tiny demo model and the
same three cached tracks, with the same seed and the same global batch (batch 1 x grad_accum):
(a) one process accumulating grad_accum micro-batches per step;
(b) `--gpus N`: torchrun with N ranks, each running grad_accum / N of them (gloo on CPU, NCCL on GPUs).
Printed: the largest absolute difference between the two final adapters, and the wall time per
optimizer step of each, from the job's own step events after WARMUP steps (start-up excluded). On a
CPU each process gets one thread (OMP_NUM_THREADS=1, torchrun's default, unless set), so with N free
cores (b) shows the split work plus the exchange; on N GPUs it shows the scaling.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WARMUP = 5

from trainer_overhead import setup  # noqa: E402 - the same tiny model, tones and warm cache (bench/ is on sys.path)


def run_job(home: Path, name: str, cfg: dict, env: dict) -> tuple[float, Path]:
    """Run one training job to completion: (seconds per step after warm-up, final adapter file)."""
    job = home / "lora_output" / name
    job.mkdir(parents=True)
    (job / "config.json").write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, str(REPO / "trainer" / "run.py"), "train", "--job-dir", str(job)],
                          env=env, cwd=str(REPO), capture_output=True, text=True)
    evs = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines()]
    end = [e for e in evs if e["type"] == "end"]
    if proc.returncode != 0 or not end or end[-1]["status"] != "completed":
        sys.exit(f"{name} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    steps = [e for e in evs if e["type"] == "step" and e["step"] >= WARMUP]
    per_step = (steps[-1]["t"] - steps[0]["t"]) / (steps[-1]["step"] - steps[0]["step"])
    return per_step, job / "final" / "pytorch_lora_weights.safetensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        # torchrun gives each rank one thread unless told otherwise; the single process gets the same, so
        # the CPU comparison is N one-thread ranks against one one-thread process
        env = {"OMP_NUM_THREADS": "1", **os.environ, "ACELORA_HOME": str(home), "ACELORA_STEP_EVENT_INTERVAL": "0"}
        os.environ["ACELORA_HOME"] = str(home)
        model, manifest = setup(home)
        cfg = {"model_id": str(model), "manifest": str(manifest), "device": args.device, "rank": 16, "alpha": 16.0,
               "max_steps": args.steps, "clip_seconds": 2.0, "grad_accum": args.grad_accum, "seed": 0,
               "checkpoint_every": 0, "gradient_checkpointing": False, "sample_every": 0, "val_every": 0}
        single_s, single = run_job(home, "single", cfg, env)
        ddp_s, ddp = run_job(home, "ddp", {**cfg, "gpus": args.gpus}, env)
        a, b = load_file(str(single)), load_file(str(ddp))
        diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"setup: tiny model, {args.steps} steps, batch 1 x grad_accum {args.grad_accum}, {args.gpus} ranks on {args.device}")
    print(f"ddp vs single max abs diff: {diff:.3g}")
    print(f"ddp step s: {ddp_s:.4f}")
    print(f"single step s: {single_s:.4f}")


if __name__ == "__main__":
    main()
