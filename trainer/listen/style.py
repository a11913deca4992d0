"""The `style-distance` job: how far the base model's and each adapter's generations lie from the data.

For the base (LoRA off) and every requested adapter, the same clips are generated: the labels of
`prompts` tracks of the run's dataset snapshot, `clips_per_prompt` seeded noises each (the A/B
job's initial_noise, so a seed means the same noise on every device and for every source), as
latents only (`output_type="latent"`: no VAE decode). Every generated frame of a source forms one
set; the reference set is every latent frame of the run's tracks, read from the preprocess cache
(the VAE encodes only a track the cache lacks). distance.py turns each pair into a Fréchet distance
and an MMD. Adapters load and switch exactly as in A/B (generate.load_adapter / use_adapter), in
this job's own process (ACESTEP.md §4).

Latent frames are the default because they need nothing beyond the model itself; an audio-embedding
variant (e.g. CLAP) is not implemented: no such model ships with this tool or can be fetched here.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from state.fsutil import read_json, write_json
from state.listen import ab, style
from trainer.listen import distance
from trainer.listen.generate import Progress, generate_latents, initial_noise, load_adapter, use_adapter


def job_style_distance(ctx, args) -> str:
    from trainer.dataset.preprocess import read_manifest
    from trainer.model.load import pick_device_dtype

    folder = Path(ctx.job_dir)
    run_dir = style.run_of(folder)
    req = style.StyleRequest.from_dict(ctx.params)
    cfg = read_json(run_dir / "config.json", default=None) or {}
    settings = ab.default_settings(run_dir)
    if not settings["model_id"]:
        raise style.StyleError(f"{run_dir / 'config.json'} is missing or names no base model: is {run_dir.name} a run?")
    snapshot = run_dir / "dataset.jsonl"
    if not snapshot.is_file():
        raise style.StyleError(f"{snapshot} is missing: the run's dataset snapshot names the tracks to compare with.")
    rows = read_manifest(snapshot)
    gen = {"steps": req.steps or settings["steps"], "shift": req.shift or settings["shift"],
           "guidance": req.guidance or settings["guidance"]}
    device, dtype = pick_device_dtype(None if req.device == "auto" else req.device)
    with ctx.gpu_lease(device):  # never beside a training run's model on the same GPU
        reference, generated = _measure_all(ctx, req, rows, settings["model_id"], float(cfg.get("max_seconds", 240.0)),
                                            gen, device, dtype)

    sigma = distance.bandwidth(reference)
    results = []
    for s in generated:
        fd = distance.frechet(s["frames"], reference)
        mmd = distance.mmd(s["frames"], reference, sigma)
        results.append({k: v for k, v in s.items() if k != "frames"} | {"frechet": fd, "mmd": mmd})
        ctx.emit("style_distance", key=s["key"], step=s["step"], frechet=fd, mmd=mmd)
    base = results[0]
    for r in results:
        r["ratio"] = r["frechet"] / base["frechet"] if base["frechet"] > 0 else None
    result = {
        "run_id": run_dir.name, "created_at": time.time(), "request": req.to_dict(), "generation": gen,
        "model_id": settings["model_id"], "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "features": "latent frames", "reference": {"tracks": len(rows), "frames": int(reference.shape[0]),
                                                   "dim": int(reference.shape[1])},
        "mmd_bandwidth": sigma, "sources": results, "best_checkpoint": style.best_checkpoint(run_dir),
    }
    write_json(folder / style.RESULT_FILE, result)
    near = style.closest(result)
    ctx.emit("result", file=style.RESULT_FILE, base_frechet=base["frechet"],
             closest=near["key"] if near else None, closest_ratio=near["ratio"] if near else None)
    return "completed"


def _measure_all(ctx, req, rows: list[dict], model_id: str, max_seconds: float, gen: dict, device, dtype):
    """(reference frames (N, C), [{key, label, source, step, clips, frames (M, C)}] base first). The
    pipeline dies with this call, before the GPU lease is given back."""
    from trainer.model.load import load_pipeline

    ctx.phase("load", 0, 1)
    pipe = load_pipeline(model_id, device=device, dtype=dtype)
    sources = [{"key": ab.BASE_KEY, "label": "Base model (adapter off)", "source": None, "step": 0, "name": None}]
    for i, src in enumerate(req.sources):
        name = f"style{i}"
        load_adapter(pipe, Path(src), name)
        sources.append({"key": ab.source_name(src), "label": ab.source_name(src), "source": str(src),
                        "step": style.source_step(src), "name": name})
    ctx.phase("load", 1, 1)

    reference = reference_frames(ctx, pipe, rows, model_id, max_seconds, device)
    prompts = [ab.prompt_from_track(rows[i], req.seconds) for i in spread(len(rows), req.prompts)]
    progress = Progress(ctx, len(sources) * len(prompts) * gen["steps"])
    out = []
    for s in sources:
        use_adapter(pipe, s.pop("name"))
        clips = []
        for p, prompt in enumerate(prompts):
            seeds = [req.seed + p * req.clips_per_prompt + k for k in range(req.clips_per_prompt)]
            noise = torch.cat([initial_noise(pipe, seed, req.seconds) for seed in seeds])  # (K, frames, C)
            clips.append(generate_latents(pipe, prompt, noise, gen["steps"], gen["shift"], gen["guidance"],
                                          progress.step))
        frames = torch.cat(clips).flatten(0, 1).double().numpy()  # (P * K * frames, C)
        out.append({**s, "clips": len(prompts) * req.clips_per_prompt, "frames": frames})
    use_adapter(pipe, None)
    return reference, out


def reference_frames(ctx, pipe, rows: list[dict], model_id: str, max_seconds: float, device) -> np.ndarray:
    """Every latent frame of the run's tracks (N, C): the cache entries training used, or a fresh encode."""
    from trainer.dataset.preprocess import track_latents

    def warn(msg: str) -> None:
        ctx.emit("warning", message=msg)

    ctx.phase("reference", 0, len(rows))
    frames = []
    for i, row in enumerate(rows):
        if not Path(row["audio"]).is_file():
            raise style.StyleError(f"Track {row.get('id')!r}: its audio {row['audio']} is gone, so its cached latents "
                                   "cannot be found (they are keyed by the file's content). Restore the file.")
        lat, _ = track_latents(pipe, row, model_id, max_seconds, warn, device)
        frames.append(lat.double().numpy())
        ctx.phase("reference", i + 1, len(rows))
    return np.concatenate(frames)


def spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return [i * n // k for i in range(k)]
