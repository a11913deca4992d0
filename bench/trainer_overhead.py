"""How much does the trainer's machinery cost per step, next to a bare PyTorch loop doing the same math?

    .venv/bin/python bench/trainer_overhead.py [--steps 800] [--repeats 3] [--threads 1]

Both sides: the tiny demo model, the same three cached tracks (preprocessed once, before timing),
the same seed, LoRA (rank 16, attention), 8-bit AdamW, constant_with_warmup, grad clipping, the
logit-normal objective with condition dropout, batch 1, 2 s crops, on CPU.
(a) the real job: `trainer/run.py train` as a subprocess, timed from its own step events;
(b) a bare loop in a subprocess (this file with --bare), timed with perf_counter around the same steps.
Wall time per step excludes start-up and the first WARMUP steps; CPU time per step is measured by
differencing a long and a short run (see main), which stays meaningful on a busy machine where wall
time does not. Peak RSS is each child's ru_maxrss (this parent never imports torch, so it does not
inflate them).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WARMUP = 20
RANK, CLIP_S, LR, SEED = 16, 2.0, 1e-4, 0


def setup(home: Path) -> tuple[Path, Path]:
    """Tiny model + three tones + a warm preprocess cache under `home`."""
    import numpy as np
    import soundfile as sf
    import torch

    from trainer.dataset.preprocess import preprocess_rows, read_manifest
    from trainer.model.load import load_pipeline
    from trainer.model.tiny import write_demo_model

    model = write_demo_model(home / "models" / "tiny")
    rows = []
    for i, (freq, sec) in enumerate([(220.0, 4.0), (330.0, 5.0), (440.0, 6.0)]):
        t = np.arange(int(sec * 48000)) / 48000
        x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        sf.write(str(home / f"t{i}.wav"), np.stack([x, x], 1), 48000, subtype="FLOAT")
        rows.append({"id": f"t{i}", "audio": str(home / f"t{i}.wav"), "caption": f"tone {freq:.0f} Hz",
                     "lyrics": "", "status": "ok"})
    manifest = home / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preprocess_rows(load_pipeline(model, device="cpu", dtype=torch.float32), read_manifest(manifest), str(model),
                    clip_seconds=CLIP_S)
    return model, manifest


def run_child(argv: list[str], env: dict) -> tuple[float, int]:
    """Run a child to completion; (CPU seconds user+system, peak RSS in MB), both from wait4."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(REPO))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"child failed ({proc.returncode}): {' '.join(argv)}\n{out.decode(errors='replace')[-3000:]}")
    return usage.ru_utime + usage.ru_stime, round(usage.ru_maxrss / 1024)  # Linux reports KiB


def trainer_run(home: Path, model: Path, manifest: Path, steps: int, tag: str, env: dict) -> dict:
    job = home / "lora_output" / f"bench-{tag}"
    job.mkdir(parents=True)
    cfg = {"model_id": str(model), "manifest": str(manifest), "device": "cpu", "rank": RANK, "alpha": float(RANK),
           "max_steps": steps, "clip_seconds": CLIP_S, "learning_rate": LR, "seed": SEED,
           "checkpoint_every": 0, "gradient_checkpointing": False}
    (job / "config.json").write_text(json.dumps(cfg))
    cpu, rss = run_child([sys.executable, str(REPO / "trainer" / "run.py"), "train", "--job-dir", str(job)], env)
    evs = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines()]
    steps_ev = [e for e in evs if e["type"] == "step"]
    first = next(e for e in steps_ev if e["step"] >= WARMUP)
    last = steps_ev[-1]
    return {"wall": (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"]),
            "from_step": first["step"], "cpu": cpu, "rss": rss,
            "event_rss": max(e["rss_mb"] for e in steps_ev)}


def bare_run(model: Path, manifest: Path, steps: int, from_step: int, env: dict) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    cpu, rss = run_child([sys.executable, __file__, "--bare", "--model", str(model), "--manifest", str(manifest),
                          "--steps", str(steps), "--from-step", str(from_step), "--out", str(out)], env)
    return {"wall": json.loads(out.read_text())["per_step_s"], "cpu": cpu, "rss": rss}


def bare_loop(model: Path, manifest: Path, steps: int, from_step: int) -> float:
    """The same training math with nothing else: no events, flags, meter, checkpoints or export."""
    import random

    import bitsandbytes as bnb
    import numpy as np
    import torch
    from peft import LoraConfig
    from transformers import get_scheduler

    from trainer.dataset.preprocess import preprocess_rows, read_manifest
    from trainer.model.load import load_pipeline

    pipe = load_pipeline(model, device="cpu", dtype=torch.float32)
    tracks = preprocess_rows(pipe, read_manifest(manifest), str(model), clip_seconds=CLIP_S)  # cache hits
    null = pipe.condition_encoder.null_condition_emb.detach()
    dit = pipe.transformer
    random.seed(SEED), np.random.seed(SEED), torch.manual_seed(SEED)
    dit.requires_grad_(False)
    dit.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, lora_dropout=0.1,
                               target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for n, p in dit.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    dit.train()
    opt = bnb.optim.AdamW8bit(params, lr=LR, weight_decay=0.01)
    sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=math.ceil(0.03 * steps),
                          num_training_steps=steps)
    n_clip = round(CLIP_S * 25)
    stamps = []
    for step in range(steps):
        tr = tracks[step % len(tracks)]
        off = int(torch.randint(tr["frames"] - n_clip + 1, ()).item())
        x0 = tr["latents"][off:off + n_clip][None]
        ctx = tr["context_latents"][:n_clip][None]
        ehs = tr["encoder_hidden_states"][tr["encoder_attention_mask"]][None]
        t = torch.sigmoid(torch.randn(1) - 0.4)
        noise = torch.randn_like(x0)
        x_t = t.view(1, 1, 1) * noise + (1 - t.view(1, 1, 1)) * x0
        if torch.rand(1).item() < 0.15:
            ehs = null.expand_as(ehs)
        pred = dit(hidden_states=x_t, timestep=t, timestep_r=t, encoder_hidden_states=ehs,
                   context_latents=ctx, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred, noise - x0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        stamps.append(time.perf_counter())
    # stamps[i] is the end of step i+1; match the trainer's window (from its first counted event on)
    return (stamps[-1] - stamps[from_step - 1]) / (steps - from_step)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP/torch threads in both children (0 = torch default); 1 keeps thread spinning "
                         "from turning other processes' load into CPU time")
    ap.add_argument("--setup", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--from-step", type=int, default=WARMUP, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.setup:
        model, manifest = setup(args.setup)
        print(json.dumps({"model": str(model), "manifest": str(manifest)}))
        return
    if args.bare:
        per = bare_loop(args.model, args.manifest, args.steps, args.from_step)
        args.out.write_text(json.dumps({"per_step_s": per}))
        return

    home = Path(tempfile.mkdtemp(prefix="acelora-bench-"))
    env = {**os.environ, "ACELORA_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    # set up in a child too: a parent that imported torch would make every child's ru_maxrss
    # report at least the parent's size (Linux counts the pre-exec memory of a forked child)
    out = subprocess.run([sys.executable, __file__, "--setup", str(home)], env=env, capture_output=True,
                         text=True, check=True).stdout
    paths = json.loads(out.strip().splitlines()[-1])
    model, manifest = Path(paths["model"]), Path(paths["manifest"])
    # Each repeat runs both sides twice, with `steps` and `steps // 4` steps. Wall time per step comes
    # from inside the loop (from step ~WARMUP on). CPU time per step is the difference of the two
    # runs' total CPU time over the difference in steps: start-up cancels out, and unlike wall time
    # it barely moves when other processes compete for the cores.
    short = max(args.steps // 4, WARMUP + 10)
    rows = {"trainer": [], "bare": []}
    for k in range(args.repeats):  # alternate, so drift in machine load hits both sides alike
        a_long = trainer_run(home, model, manifest, args.steps, f"{k}-long", env)
        b_long = bare_run(model, manifest, args.steps, a_long["from_step"], env)
        a_short = trainer_run(home, model, manifest, short, f"{k}-short", env)
        b_short = bare_run(model, manifest, short, min(a_long["from_step"], short - 1), env)
        for name, lo, sh in (("trainer", a_long, a_short), ("bare", b_long, b_short)):
            rows[name].append({"wall": lo["wall"], "cpu": (lo["cpu"] - sh["cpu"]) / (args.steps - short),
                               "rss": max(lo["rss"], sh["rss"])})
        print(f"  repeat {k}: trainer's own step events report rss_mb up to {a_long['event_rss']}")

    def col(name, key):
        return [r[key] for r in rows[name]]

    ms = lambda xs: [round(x * 1000, 2) for x in xs]  # noqa: E731
    print(f"steps per run {args.steps} and {short}, repeats {args.repeats}, threads {args.threads or 'torch default'}, "
          f"cores {os.cpu_count()}, load average at end {os.getloadavg()[0]:.2f}, workspace {home}")
    for label, name in (("(a) trainer subprocess", "trainer"), ("(b) bare PyTorch loop ", "bare")):
        print(f"{label}: wall {statistics.median(col(name, 'wall')) * 1000:7.2f} ms/step (median; runs "
              f"{ms(col(name, 'wall'))}), CPU {statistics.median(col(name, 'cpu')) * 1000:7.2f} ms/step "
              f"(runs {ms(col(name, 'cpu'))}), peak RSS {max(col(name, 'rss'))} MB")
    wall = statistics.median(a / b for a, b in zip(col("trainer", "wall"), col("bare", "wall")))
    cpu = statistics.median(a / b for a, b in zip(col("trainer", "cpu"), col("bare", "cpu")))
    print(f"ratio (a)/(b): CPU time {cpu:.3f}, wall time {wall:.3f} (medians of paired repeats; target <= 1.05)")


if __name__ == "__main__":
    main()
