"""Does the default recipe teach the tiny demo model a style? Measured with the real jobs, side by side.

    .venv/bin/python bench/learns.py [--tracks 5] [--max-steps 0] [--measure-at 100,200,...]

1. Two constructed latent styles ("house styles", see `house_style`) and a second draw of the
   first: the style distance must separate the styles before it is trusted. The demo model's VAE
   is shown failing the same test on audio (a chord and white noise encode to nearly one point),
   which is why the styles are written into latent space and not into audio.
2. A dataset of `--tracks` tracks of style A: each track's audio file is a short placeholder whose
   preprocess-cache entry (keyed by the file's hash, exactly as preprocessing writes it) holds the
   style's latent frames, so training, validation and the style job all read the style.
3. `trainer/run.py train` with the default recipe (config: only the demo model, the manifest,
   device cpu, previews off and gradient checkpointing off: neither changes what is learned, both
   cost CPU time), then `trainer/run.py style-distance` on the base and the final adapter
   (plus, with --measure-at, the checkpoints at those steps: one run gives the whole curve).

Prints `name: value` lines; the headline is `style distance ratio adapter/base` (target <= 0.5).
Children run with one torch thread: on a shared 2-core machine more threads spin and slow down.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SECONDS = 10.0  # per track: 250 latent frames
SECTIONS = 3    # a style's frames come from this many "sections" (a mixture), visited in segments


# ---- the styles ------------------------------------------------------------------------------

def house_style(seed: int, dim: int) -> dict:
    """A latent "style": where frames sit and how they move, fixed by `seed`.

    Frames are mean + section offset + mix @ s_t, where s_t is a smooth AR(1) process (unit variance
    per channel, correlation 0.9 between neighbouring frames), `mix` a random rotation with
    decaying scales (correlated channels, some loud, some quiet), and the section offset one of
    SECTIONS fixed vectors, switched every 1-3 seconds. So a style is a mixture of SECTIONS
    anisotropic Gaussians with temporal structure: a mean, a covariance and modes to learn, none of
    which the base model produces.
    """
    g = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(g.normal(size=(dim, dim)))
    offsets = g.normal(size=(SECTIONS, dim))
    return {"mean": 0.6 * g.choice([-1.0, 1.0], dim), "mix": rot * np.linspace(0.9, 0.15, dim),
            "sections": 1.0 * offsets / np.linalg.norm(offsets, axis=1, keepdims=True)}


def style_track(style: dict, rng: np.random.Generator, frames: int) -> np.ndarray:
    """One track of `style`: (frames, dim) float32."""
    dim = style["mean"].shape[0]
    rho = 0.9
    e = rng.normal(size=(frames, dim))
    s = np.empty_like(e)
    s[0] = e[0]
    for t in range(1, frames):
        s[t] = rho * s[t - 1] + np.sqrt(1 - rho * rho) * e[t]
    section = np.empty(frames, dtype=int)
    t = 0
    while t < frames:
        n = int(rng.integers(25, 76))  # 1-3 s at 25 frames/s
        section[t:t + n] = rng.integers(SECTIONS)
        t += n
    return (style["mean"] + style["sections"][section] + s @ style["mix"].T).astype(np.float32)


def style_set(style: dict, seed: int, tracks: int, frames: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([style_track(style, rng, frames) for _ in range(tracks)])


# ---- setup -----------------------------------------------------------------------------------

def separation(dim: int, tracks: int, frames: int) -> dict:
    """Distances between two draws of style A, and between style A and style B."""
    from trainer.listen import distance

    a = style_set(house_style(1, dim), 10, tracks, frames)
    a2 = style_set(house_style(1, dim), 11, tracks, frames)
    b = style_set(house_style(2, dim), 12, tracks, frames)
    sigma = distance.bandwidth(a)
    return {"frechet_same": distance.frechet(a2, a), "frechet_other": distance.frechet(b, a),
            "mmd_same": distance.mmd(a2, a, sigma), "mmd_other": distance.mmd(b, a, sigma)}


def vae_collapse(pipe) -> float:
    """Fréchet distance between the demo VAE's latents of a chord and of white noise (2 s each)."""
    import torch

    from trainer.dataset.preprocess import encode_latents
    from trainer.listen import distance

    t = np.arange(2 * pipe.sample_rate) / pipe.sample_rate
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    noise = 0.3 * np.random.default_rng(0).normal(size=t.shape)
    with torch.no_grad():
        za, zb = (encode_latents(pipe, np.stack([x, x]).astype(np.float32)).double().numpy() for x in (chord, noise))
    return distance.frechet(za, zb)


def write_dataset(home: Path, model: Path, tracks: int, max_seconds: float, seconds: float = SECONDS) -> Path:
    """Placeholder audio files + their latent cache entries (style A) + a manifest."""
    import soundfile as sf
    import torch

    from trainer.dataset.preprocess import store_latents
    from trainer.model.tiny import ACOUSTIC_DIM

    data = home / "datasets" / f"house-{tracks}"
    data.mkdir(parents=True)
    style, rng = house_style(1, ACOUSTIC_DIM), np.random.default_rng(100)
    rows = []
    for i in range(tracks):
        audio = data / f"track{i:03d}.wav"
        x = (0.1 * np.random.default_rng(1000 + i).normal(size=4800)).astype(np.float32)  # unique bytes: a unique hash
        sf.write(str(audio), np.stack([x, x], 1), 48000, subtype="FLOAT")
        store_latents(audio, str(model), max_seconds, torch.from_numpy(style_track(style, rng, int(seconds * 25))),
                      note="bench/learns.py house style A")
        rows.append({"id": audio.name, "audio": str(audio), "caption": "an instrumental track in the house style",
                     "lyrics": "", "bpm": 120, "duration": seconds, "status": "ok"})
    manifest = data / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


# ---- the jobs --------------------------------------------------------------------------------

def run_job(kind: str, job_dir: Path, env: dict) -> float:
    """trainer/run.py KIND as a child; returns its CPU seconds (user + system)."""
    proc = subprocess.Popen([sys.executable, str(REPO / "trainer" / "run.py"), kind, "--job-dir", str(job_dir)],
                            env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{kind} failed:\n{out.decode(errors='replace')[-3000:]}")
    return usage.ru_utime + usage.ru_stime


def events(job_dir: Path, kind: str) -> list[dict]:
    lines = (job_dir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == kind]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=5)
    ap.add_argument("--max-steps", type=int, default=0, help="0 = the default recipe's steps for this many tracks")
    ap.add_argument("--measure-at", default="", help="also measure the checkpoints at these steps (comma-separated)")
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--home", type=Path, help="workspace to use (default: a new temp folder)")
    args = ap.parse_args()
    t0 = time.time()
    home = args.home or Path(tempfile.mkdtemp(prefix="acelora-learns-"))
    os.environ["ACELORA_HOME"] = str(home)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    import torch

    torch.set_num_threads(1)
    from state.train.config import TrainConfig
    from trainer.model.load import load_pipeline
    from trainer.model.tiny import ACOUSTIC_DIM, write_demo_model

    sep = separation(ACOUSTIC_DIM, max(args.tracks, 5), int(SECONDS * 25))
    print(f"style separation frechet same-style/other-style: {sep['frechet_same']:.4f} / {sep['frechet_other']:.4f}")
    print(f"style separation mmd same-style/other-style: {sep['mmd_same']:.5f} / {sep['mmd_other']:.5f}")
    model = write_demo_model(home / "models" / "tiny")
    print(f"demo VAE frechet chord vs white noise (why the style is written in latent space): "
          f"{vae_collapse(load_pipeline(model, device='cpu', dtype=torch.float32)):.4f}")

    cfg = {"model_id": str(model), "device": "cpu", "sample_every": 0, "gradient_checkpointing": False}
    manifest = write_dataset(home, model, args.tracks, TrainConfig().max_seconds)
    measure_at = sorted({int(s) for s in args.measure_at.split(",") if s.strip()})
    if args.max_steps:
        cfg["max_steps"] = args.max_steps
    if measure_at:  # keep a checkpoint at each of those steps (the gcd of them is a save interval that hits all)
        cfg.update(checkpoint_every=int(np.gcd.reduce(measure_at)), keep_last=10_000)
    run = home / "lora_output" / "learns"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**cfg, "manifest": str(manifest)}))
    cpu_train = run_job("train", run, env)
    end = events(run, "end")[-1]
    if end["status"] != "completed":
        sys.exit(f"training ended {end['status']}: {events(run, 'error')[-1:]}")
    val = events(run, "validation")
    start = events(run, "start")[0]
    trained_on = start["dataset_size"]  # tracks trained on: held-out validation tracks excluded

    sources = [run / "checkpoints" / f"step-{s:06d}" for s in measure_at if s < start["total_steps"]] + [run / "final"]
    job = run / "samples" / "style-bench"
    job.mkdir(parents=True)
    (job / "params.json").write_text(json.dumps({"sources": [str(s) for s in sources], "prompts": args.prompts,
                                                 "clips_per_prompt": args.clips, "seconds": SECONDS,
                                                 "device": "cpu"}))
    cpu_style = run_job("style-distance", job, env)
    result = json.loads((job / "style.json").read_text())
    by_key = {s["key"]: s for s in result["sources"]}
    base, final = by_key["base"], by_key["final"]
    for s in result["sources"][1:-1]:
        print(f"style distance ratio at step {s['step']}: {s['ratio']:.3f} (passes {s['step'] / trained_on:.0f})")
    print(f"tracks: {args.tracks} ({trained_on} trained on; validation on {start['validation_tracks']} "
          f"{'held-out' if start['validation_held_out'] else 'training'} tracks)")
    print(f"train steps: {start['total_steps']} ({start['schedule_source']}; {start['total_steps'] / trained_on:.0f} passes)")
    print(f"validation loss at start: {val[0]['loss']:.4f} (step {val[0]['step']})")
    print(f"validation loss at end: {val[-1]['loss']:.4f} (step {val[-1]['step']})")
    print(f"style distance base: {base['frechet']:.4f} (mmd {base['mmd']:.5f})")
    print(f"style distance adapter: {final['frechet']:.4f} (mmd {final['mmd']:.5f})")
    print(f"style distance mmd ratio adapter/base: {final['mmd'] / base['mmd']:.3f}")
    print(f"style distance ratio adapter/base: {final['ratio']:.3f}")
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(f"cpu s: {cpu_train + cpu_style + own.ru_utime + own.ru_stime:.0f} (train {cpu_train:.0f}, "
          f"style {cpu_style:.0f})")
    print(f"wall s: {time.time() - t0:.0f} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"workspace: {home}")


if __name__ == "__main__":
    main()
