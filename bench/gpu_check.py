"""The GPU check: the real training path at the real 2B dimensions, on whatever GPU this machine has.

    .venv/bin/python bench/gpu_check.py            # on a GPU machine: < 8 minutes, no network
    .venv/bin/python bench/gpu_check.py --smoke    # the same code at tiny sizes on the CPU, < 2 minutes

No weights are downloaded: a pipeline with random weights at the release's 2B shapes is built in code
(trainer/model/tiny.py build_release_size_pipeline) and saved once. Every measurement runs the product's
own `trainer/run.py train` / `ab` jobs as subprocesses, so what is timed is what a user runs:

  * 30 s and 60 s clips, gradient checkpointing on and off, bf16 and fp16 + loss scaling, each attention
    backend this machine can run, and regional torch.compile: step time, peak GPU memory, MFU
    (FLOPs of one training step counted with torch.utils.flop_counter, over the GPU's dense bf16 peak);
  * one run with a preview rendered during training (in-process, under the GPU lease);
  * a 30 s A/B pair (base vs the adapter) with its generation real-time factor.

Prints `name: value` lines; with $OUT set, also writes $OUT/gpu_check.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# dense bf16/fp16 tensor-core peaks (TFLOP/s) of the GPUs Spaces and Jobs rent, for MFU
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0,
               "T4": 65.0, "V100": 125.0, "4090": 165.0, "3090": 71.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU (what the test runs)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per configuration")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args(argv)
    steps = args.steps or (4 if args.smoke else 40)
    work = args.work or Path(tempfile.mkdtemp(prefix="acelora-gpu-check-"))
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ACELORA_HOME": str(home), "ACELORA_STEP_EVENT_INTERVAL": "0",
           "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    t_start = time.time()
    figures: dict[str, object] = {}

    def put(name: str, value) -> None:
        figures[name] = value
        print(f"{name}: {value}", flush=True)

    hw = hardware()
    put("device", hw["name"])
    put("gpu_memory_gb", hw["memory_gb"])
    model = build_model(home, args.smoke, hw)
    manifest = write_dataset(home, seconds=5.0 if args.smoke else 70.0)
    clips = (2.0, 4.0) if args.smoke else (30.0, 60.0)
    device = "cpu" if args.smoke else "cuda"
    fp16 = "cpu:fp16" if args.smoke else "cuda:fp16"
    grid = [(c, ck) for c in clips for ck in (True, False)]
    if args.smoke:  # both clip lengths and both checkpointing settings, in two runs instead of four
        grid = [(clips[0], True), (clips[1], False)]
    configs = [(f"{c:g}s_ckpt_{'on' if ck else 'off'}", {"clip_seconds": c, "gradient_checkpointing": ck})
               for c, ck in grid]
    configs.append((f"{clips[0]:g}s_ckpt_on_fp16_scaler", {"clip_seconds": clips[0], "device": fp16}))
    for backend in ("_native_efficient", "_native_cudnn", "flash"):
        if args.smoke or not backend_usable(backend):
            put(f"attention_{backend}", "skipped (needs CUDA and its kernels)")
            continue
        configs.append((f"{clips[0]:g}s_attn_{backend}", {"clip_seconds": clips[0], "attention_backend": backend}))
    if args.smoke:
        put("compile", "skipped on the CPU smoke run (inductor compiles for minutes on 2 cores)")
    else:
        configs.append((f"{clips[0]:g}s_compile", {"clip_seconds": clips[0], "compile": True}))
    preview = {"sample_every": max(2, steps // 2), "sample_seconds": 2.0 if args.smoke else 10.0,
               "sample_steps": 4 if args.smoke else 30}
    if args.smoke:  # the preview rides on the first run: one training subprocess fewer (~15 s on 2 cores)
        configs[0][1].update(preview)
    else:
        configs.append((f"{clips[0]:g}s_with_preview", {"clip_seconds": clips[0], **preview}))

    flops = {c: step_flops(model, c, device, args.smoke) for c in clips}
    for c, f in flops.items():
        put(f"flops_per_step_{c:g}s", f"{f:.4g}")
    os.environ["ACELORA_HOME"] = str(home)  # the estimate cache this process reads is the jobs' one
    baseline_run = None
    for i, (name, over) in enumerate(configs):
        # the preflight's fake-tensor prediction, measured first so the run's start event carries it
        # (the smoke run predicts its first configuration only: the code path, not the figures, is the point)
        predicted = predict(env, model, over, device) if (not args.smoke or i == 0) else None
        res = train_once(home, env, model, manifest, name, steps, device, over)
        if predicted is not None:
            res["predicted_peak_mb"] = round(predicted, 1)
            if res.get("peak_mem_mb"):
                res["peak_vs_predicted"] = round(res["peak_mem_mb"] / predicted, 3)
        for k, v in res.items():
            put(f"{name}_{k}", v)
        clip = over.get("clip_seconds", clips[0])
        if res.get("step_s") and hw["peak_tflops"]:
            put(f"{name}_mfu_pct", round(100 * flops[clip] / res["step_s"] / (hw["peak_tflops"] * 1e12), 1))
        baseline_run = baseline_run or home / "lora_output" / name
    ab = ab_pair(env, baseline_run, seconds=2.0 if args.smoke else 30.0, steps=4 if args.smoke else 30)
    for k, v in ab.items():
        put(f"ab_{k}", v)
    put("total_s", round(time.time() - t_start, 1))
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.json").write_text(json.dumps(figures, indent=2))
    return 0


def hardware() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"name": "cpu", "memory_gb": None, "peak_tflops": None}
    props = torch.cuda.get_device_properties(0)
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in props.name), None)
    return {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1), "peak_tflops": peak}


def build_model(home: Path, smoke: bool, hw: dict) -> Path:
    """The tiny demo model, or random weights at the 2B release dimensions, saved once under `home`."""
    from trainer.model.tiny import build_release_size_pipeline, write_demo_model

    if smoke:
        return write_demo_model(home / "models" / "tiny")
    import torch

    dest = home / "models" / "random-2b"
    if not (dest / "model_index.json").is_file():
        t0 = time.time()
        pipe = build_release_size_pipeline(device="cuda", dtype=torch.bfloat16)
        pipe.save_pretrained(dest, safe_serialization=True)
        del pipe
        torch.cuda.empty_cache()
        print(f"build_random_2b_s: {time.time() - t0:.1f}", flush=True)
    return dest


def write_dataset(home: Path, seconds: float) -> Path:
    """Four stereo 48 kHz tracks (tones over noise) with captions and lyrics, and their manifest."""
    import numpy as np
    import soundfile as sf

    root = home / "datasets" / "check"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        n = int(seconds * 48000)
        t = np.arange(n) / 48000
        x = 0.3 * np.sin(2 * np.pi * (110 * (i + 2)) * t) + 0.05 * rng.standard_normal(n)
        path = root / f"track{i}.wav"
        sf.write(str(path), np.stack([x, x], 1).astype(np.float32), 48000, subtype="FLOAT")
        rows.append({"id": path.name, "audio": str(path), "caption": f"test track {i}, synth drone",
                     "lyrics": "[Verse]\nla la la", "bpm": 100 + 10 * i, "status": "ok"})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def backend_usable(name: str) -> bool:
    if name == "flash":
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            return False
    return True


def step_flops(model: Path, clip: float, device: str, smoke: bool) -> float:
    """FLOPs of one training step (forward + backward, LoRA rank 64, checkpointing off) at this clip length."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from state.train.config import TrainConfig
    from trainer.model.load import load_pipeline
    from trainer.train.adapter import add_lora
    from trainer.train.objective import Objective, compute_loss, make_batch

    dtype = torch.float32 if smoke else torch.bfloat16
    pipe = load_pipeline(model, device="cpu", dtype=dtype)
    dit = pipe.transformer.to(device)
    del pipe
    cfg = TrainConfig(model_id=str(model))
    add_lora(dit, cfg)
    dit.train()
    T = int(clip * 25)
    C = dit.config.audio_acoustic_hidden_dim
    H = dit.config.encoder_hidden_size or dit.config.hidden_size
    track = {"latents": torch.randn(T, C), "context_latents": torch.randn(T, 2 * C),
             "encoder_hidden_states": torch.randn(300, H), "encoder_attention_mask": torch.ones(300, dtype=torch.bool)}
    batch = make_batch([track], 0, torch.device(device))
    obj = Objective("logit_normal_max2", -0.4, 1.0, 0.15)
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        compute_loss(dit, batch, torch.zeros(1, 1, H, device=device), obj, dtype).backward()
    total = float(counter.get_total_flops())
    del dit
    if device == "cuda":
        torch.cuda.empty_cache()
    return total


def train_once(home: Path, env: dict, model: Path, manifest: Path, name: str, steps: int, device: str,
               over: dict) -> dict:
    """One `trainer/run.py train` subprocess; its figures read back from its own events."""
    from state.events import read_all

    run = home / "lora_output" / name
    run.mkdir(parents=True, exist_ok=True)
    cfg = {"model_id": str(model), "manifest": str(manifest), "max_steps": steps, "device": device,
           "rank": 64, "alpha": 64.0, "checkpoint_every": 0, "val_every": 0, "sample_every": 0, **over}
    (run / "config.json").write_text(json.dumps(cfg))
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "trainer" / "run.py"), "train", "--job-dir", str(run)],
                          env=env, capture_output=True, text=True, timeout=600)
    wall = time.time() - t0
    evs = read_all(run / "events.jsonl")
    end = next((e for e in reversed(evs) if e["type"] == "end"), {})
    out = {"status": end.get("status", f"no end event (exit {proc.returncode})"), "wall_s": round(wall, 1)}
    if end.get("status") != "completed":
        err = next((e for e in reversed(evs) if e["type"] == "error"), {})
        out["error"] = (err.get("message") or proc.stderr[-300:]).replace("\n", " ")[:300]
        return out
    start = next(e for e in evs if e["type"] == "start")
    out["precision"] = start.get("precision")
    st = [e for e in evs if e["type"] == "step"]
    late = st[len(st) // 2:]  # steady state: the first half pays for allocation, compilation, warm-up
    if len(late) >= 2:
        out["step_s"] = round((late[-1]["elapsed_s"] - late[0]["elapsed_s"]) / (late[-1]["step"] - late[0]["step"]), 4)
    peaks = [e["gpu_mem_peak_mb"] for e in st if e.get("gpu_mem_peak_mb")]
    out["peak_mem_mb"] = max(peaks) if peaks else None
    out["rss_mb"] = max((e.get("rss_mb") or 0) for e in st) if st else None
    if start.get("predicted_peak_mb"):  # what the run itself read from the cache (CUDA only)
        out["start_event_predicted_mb"] = start["predicted_peak_mb"]
    out["skipped_steps"] = st[-1].get("skipped_steps", 0) if st else None
    samples = [e for e in evs if e["type"] == "sample"]
    if samples:
        out["previews"] = len(samples)
        meta = json.loads(Path(samples[-1]["path"]).with_suffix(".json").read_text())
        out["preview_render_s"] = meta.get("render_s")
    return out


def predict(env: dict, model: Path, over: dict, device: str) -> float | None:
    """The product's `estimate` job (one fake-tensor step at this model's size) for a configuration;
    its allocator peak in MB, or None when it failed."""
    from state.train import estimates
    from state.train.config import TrainConfig

    cfg = {**TrainConfig(model_id=str(model)).to_dict(), "rank": 64, "alpha": 64.0, "device": device, **over}
    dev = cfg["device"].split(":")[-1]
    dtype = dev if dev in ("fp16", "fp32") else ("fp32" if device == "cpu" else "bf16")
    request = estimates.request_for(str(model), cfg, dtype=dtype, seconds=float(cfg["clip_seconds"]))
    if request is None:
        return None
    job = Path(env["ACELORA_HOME"]) / "jobs" / f"estimate-{estimates.key(request)}"
    job.mkdir(parents=True, exist_ok=True)
    (job / "params.json").write_text(json.dumps({"key": estimates.key(request), "request": request}))
    subprocess.run([sys.executable, str(REPO / "trainer" / "run.py"), "estimate", "--job-dir", str(job)],
                   env=env, capture_output=True, text=True, timeout=600)
    result = estimates.read(request)
    return result.get("peak_allocated_mb") if result and not result.get("error") else None


def ab_pair(env: dict, run: Path, seconds: float, steps: int) -> dict:
    """Base vs the run's final adapter from one seed: the product's `ab` job; real-time factor of the renders."""
    from state.events import read_all
    from state.listen import ab

    req = ab.ABRequest(run_id=run.name, sources=[str(run / "final")], prompt={"caption": "synth drone",
                       "duration": seconds}, steps=steps)
    comp = ab.samples_dir(run) / "ab-check"
    comp.mkdir(parents=True, exist_ok=True)
    (comp / ab.PARAMS_FILE).write_text(json.dumps(req.to_dict()))
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "trainer" / "run.py"), "ab", "--job-dir", str(comp)],
                          env=env, capture_output=True, text=True, timeout=600)
    wall = time.time() - t0
    evs = read_all(comp / "events.jsonl")
    gen = [e for e in evs if e["type"] == "phase" and e.get("name") == "generate"]
    meta = ab.read_meta(comp)
    if proc.returncode != 0 or meta is None:
        return {"status": "failed", "error": (proc.stderr or "")[-300:].replace("\n", " ")}
    render_s = gen[-1]["t"] - gen[0]["t"] if len(gen) >= 2 else wall
    import numpy as np
    import soundfile as sf

    a, b = (sf.read(str(comp / o["file"]))[0] for o in meta["outputs"][:2])
    return {"status": "completed", "outputs": len(meta["outputs"]), "seconds_each": seconds,
            "render_s": round(render_s, 2), "rtf": round(render_s / (seconds * len(meta["outputs"])), 4),
            "loudness_spread_db": round(meta["loudness"]["spread_db"], 2),
            "a_differs_from_b": bool(not np.allclose(a, b))}


if __name__ == "__main__":
    sys.exit(main())
