"""Turn manifest rows into the tensors the training loop feeds the DiT, with a two-level cache.

Per track:
  latents                [T, C]  VAE posterior mean of the 48 kHz stereo audio, 25 frames/s
  encoder_hidden_states  [L, H]  condition encoder output for the labels (text + lyrics + silence timbre)
  encoder_attention_mask [L]     bool
  context_latents        [T, 2C] silence latent tiled to T ++ chunk mask of ones (text2music)

Cache (under <workspace>/cache/):
  latents/<key>.safetensors  key = audio sha256 + model id + PREPROCESS_VERSION + max_seconds + chunking
  cond/<key>.safetensors     key = label fields + clip seconds + model id + PREPROCESS_VERSION
so a caption edit re-encodes only the text side and a second run never touches the VAE.
Context latents are not cached: they depend only on T and the model, and cost one tile + concat.

Why the posterior mean and not a sample: the cache must be a pure function of the audio, and a
single cached sample would freeze one noise draw into every epoch. The mean is the centre of what
the decoder was trained to reconstruct; the diffusion noise supplies the stochasticity training needs.
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from state import paths
from state.fsutil import atomic_write_bytes, file_sha256

PREPROCESS_VERSION = 1
CHUNK_SECONDS = 30.0    # VAE encode window; activations scale with it, not with the track
OVERLAP_SECONDS = 2.0   # context each side of a window, trimmed away, so chunk seams match a whole-file encode
TEXT2MUSIC = "text2music"
LABEL_FIELDS = ("caption", "lyrics", "bpm", "keyscale", "timesignature", "vocal_language")


# ---------------------------------------------------------------- audio -> latents

def hop_length(pipe) -> int:
    return int(round(pipe.sample_rate / pipe.latents_per_second))  # 1920 for the release


@torch.no_grad()
def encode_latents(pipe, audio: np.ndarray, chunk_seconds: float = CHUNK_SECONDS,
                   overlap_seconds: float = OVERLAP_SECONDS) -> torch.Tensor:
    """(2, n) float32 at pipe.sample_rate -> [T, C] float32 on CPU, T = n // hop.

    Windows and overlaps are whole multiples of the hop, so every window maps to an exact number of
    latent frames and the trimmed cores tile the track with no seam arithmetic. A trailing partial
    hop (< 40 ms) is dropped, as the VAE itself would.
    """
    hop = hop_length(pipe)
    frames = audio.shape[1] // hop
    if frames < 1:
        raise ValueError(f"Audio is shorter than one latent frame ({hop} samples at {pipe.sample_rate} Hz).")
    core = max(1, int(chunk_seconds * pipe.sample_rate) // hop)  # in frames
    ctx_frames = max(0, int(overlap_seconds * pipe.sample_rate) // hop)
    vae = pipe.vae
    x_all = torch.from_numpy(np.ascontiguousarray(audio[:, : frames * hop]))
    out = []
    for start in range(0, frames, core):
        end = min(frames, start + core)
        w0, w1 = max(0, start - ctx_frames), min(frames, end + ctx_frames)
        x = x_all[:, w0 * hop: w1 * hop].unsqueeze(0).to(device=vae.device, dtype=vae.dtype)
        mean = vae.encode(x).latent_dist.mean  # (1, C, w1 - w0)
        out.append(mean[0, :, start - w0: end - w0].float().cpu())
    return torch.cat(out, dim=1).T.contiguous()  # (T, C)


# ---------------------------------------------------------------- labels -> conditioning

def _label_values(row: dict) -> dict:
    """The label fields as encode_prompt wants them; empty lyrics mean an instrumental (ACESTEP.md §5)."""
    bpm = row.get("bpm")
    try:
        bpm = int(round(float(bpm))) if bpm not in (None, "") else None
    except (TypeError, ValueError):
        bpm = None
    return {
        "caption": str(row.get("caption") or ""),
        "lyrics": str(row.get("lyrics") or "").strip() or "[Instrumental]",
        "bpm": bpm,
        "keyscale": str(row.get("keyscale") or "") or None,
        "timesignature": str(row.get("timesignature") or "") or None,
        "vocal_language": str(row.get("vocal_language") or "") or "unknown",
    }


def timbre_input(pipe, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The silence-latent timbre input, sliced as AceStepPipeline.__call__ does without reference audio."""
    timbre_fix_frame = math.ceil(30 * pipe.latents_per_second)
    refer = pipe.condition_encoder.silence_latent[:, :timbre_fix_frame, :].to(device=device, dtype=dtype)
    return refer.contiguous(), torch.arange(1, device=device, dtype=torch.long)


@torch.no_grad()
def encode_conditioning(pipe, row: dict, seconds: float) -> dict[str, torch.Tensor]:
    """encode_prompt + condition encoder for one track, exactly the pipeline's text2music inputs."""
    device = pipe.condition_encoder.device
    dtype = pipe.condition_encoder.dtype
    lab = _label_values(row)
    text_h, text_m, lyric_h, lyric_m = pipe.encode_prompt(
        prompt=lab["caption"], lyrics=lab["lyrics"], device=pipe.text_encoder.device,
        vocal_language=lab["vocal_language"], audio_duration=seconds,
        instruction=pipe._get_task_instruction(task_type=TEXT2MUSIC),
        bpm=lab["bpm"], keyscale=lab["keyscale"], timesignature=lab["timesignature"],
    )
    refer, order = timbre_input(pipe, device, dtype)
    hidden, mask = pipe.condition_encoder(
        text_hidden_states=text_h.to(device=device, dtype=dtype), text_attention_mask=text_m.to(device),
        lyric_hidden_states=lyric_h.to(device=device, dtype=dtype), lyric_attention_mask=lyric_m.to(device),
        refer_audio_acoustic_hidden_states_packed=refer, refer_audio_order_mask=order,
    )
    return {"encoder_hidden_states": hidden[0].float().cpu().contiguous(),
            "encoder_attention_mask": mask[0].bool().cpu().contiguous()}


@torch.no_grad()
def context_latents(pipe, frames: int) -> torch.Tensor:
    """[T, 2C]: the pipeline's own text2music src latents (silence, tiled) ++ chunk mask."""
    device = pipe.condition_encoder.device
    dtype = pipe.transformer.dtype if pipe.transformer is not None else torch.float32
    dim = pipe.transformer.config.audio_acoustic_hidden_dim
    src, frames = pipe.prepare_src_latents(device=device, dtype=dtype, batch_size=1, latent_length=frames,
                                           task_type=TEXT2MUSIC)
    mask = pipe._build_chunk_mask(task_type=TEXT2MUSIC, latent_length=frames, batch_size=1, device=device,
                                  dtype=dtype, acoustic_dim=dim)
    return torch.cat([src, mask], dim=-1)[0].float().cpu().contiguous()


# ---------------------------------------------------------------- cache

def _key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def latents_key(audio_sha: str, model_id: str, max_seconds: float | None) -> str:
    return _key(kind="latents", audio=audio_sha, model=str(model_id), v=PREPROCESS_VERSION,
                max_seconds=max_seconds, chunk=CHUNK_SECONDS, overlap=OVERLAP_SECONDS)


def cond_key(row: dict, seconds: float, model_id: str) -> str:
    return _key(kind="cond", labels=_label_values(row), seconds=int(seconds), model=str(model_id),
                v=PREPROCESS_VERSION, task=TEXT2MUSIC)


def _cache_path(kind: str, key: str) -> Path:
    return paths.cache_dir() / kind / f"{key}.safetensors"


def _cache_read(path: Path, required: tuple[str, ...]) -> tuple[dict, dict] | None:
    """(tensors, metadata), or None when missing or unreadable (a corrupt file is rebuilt, not fatal)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # noqa: BLE001 - any decode failure means "rebuild"; the cause is logged by the caller
        return None
    if any(k not in tensors for k in required):
        return None
    return tensors, meta


def _cache_write(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    from safetensors.torch import save

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(tensors, metadata={k: str(v) for k, v in meta.items()}))


# ---------------------------------------------------------------- per track and per dataset

def encoders_on(pipe, device: torch.device | str | None) -> None:
    """Move the VAE, text encoder and condition encoder to `device` (None: leave them where they are).

    Training loads the whole pipeline on the CPU and calls this only on a cache miss, so a warm cache
    never puts an encoder on the GPU, and the DiT joins the GPU only after the encoders are freed.
    """
    if device is None:
        return
    for name in ("vae", "text_encoder", "condition_encoder"):
        module = getattr(pipe, name, None)
        if module is not None and module.device != torch.device(device):
            module.to(device)


def track_latents(pipe, row: dict, model_id: str, max_seconds: float | None, warn=None,
                  device=None) -> tuple[torch.Tensor, float]:
    """Cached [T, C] latents and the clip's seconds; the VAE runs only on a cache miss."""
    from trainer.dataset.audio import load_audio

    audio_path = Path(row["audio"])
    path = _cache_path("latents", latents_key(file_sha256(audio_path), model_id, max_seconds))
    hit = _cache_read(path, ("latents",))
    if hit is None and path.exists() and warn:
        warn(f"Cache file {path.name} for {audio_path.name} was unreadable; rebuilding it.")
    if hit is not None:
        lat = hit[0]["latents"]
        if lat.dim() == 2 and lat.shape[1] == pipe.transformer.config.audio_acoustic_hidden_dim:
            return lat.float(), lat.shape[0] / pipe.latents_per_second
    encoders_on(pipe, device)
    loaded = load_audio(audio_path, max_seconds=max_seconds, target_sr=pipe.sample_rate)
    for note in loaded.notes:
        if warn:
            warn(f"{audio_path.name}: {note}")
    lat = encode_latents(pipe, loaded.samples)
    _cache_write(path, {"latents": lat}, {"audio": audio_path.name, "model": model_id,
                                          "version": PREPROCESS_VERSION, "notes": json.dumps(loaded.notes)})
    return lat, lat.shape[0] / pipe.latents_per_second


def store_latents(audio_path: Path, model_id: str, max_seconds: float | None, latents: torch.Tensor,
                  note: str = "") -> Path:
    """Write [T, C] latents as the cache entry of `audio_path`, as if the VAE had encoded it.

    For constructed data whose structure lives in latent space (bench/learns.py): the training job
    and the style-distance job then read these latents exactly as they read encoded audio.
    """
    path = _cache_path("latents", latents_key(file_sha256(Path(audio_path)), model_id, max_seconds))
    _cache_write(path, {"latents": latents.float().contiguous()},
                 {"audio": Path(audio_path).name, "model": model_id, "version": PREPROCESS_VERSION, "note": note})
    return path


def track_conditioning(pipe, row: dict, seconds: float, model_id: str, warn=None,
                       device=None) -> dict[str, torch.Tensor]:
    required = ("encoder_hidden_states", "encoder_attention_mask")
    path = _cache_path("cond", cond_key(row, seconds, model_id))
    hit = _cache_read(path, required)
    if hit is None and path.exists() and warn:
        warn(f"Cache file {path.name} for track {row.get('id')} was unreadable; rebuilding it.")
    if hit is not None:
        return {k: hit[0][k] for k in required}
    encoders_on(pipe, device)
    cond = encode_conditioning(pipe, row, seconds)
    _cache_write(path, cond, {"id": row.get("id"), "model": model_id, "version": PREPROCESS_VERSION})
    return cond


def preprocess_rows(pipe, rows: list[dict], model_id: str, ctx=None, max_seconds: float = 240.0,
                    clip_seconds: float = 0.0, device=None) -> list[dict]:
    """One dict of CPU tensors per row (see the module docstring), in row order.

    With `clip_seconds` > 0 (training on random crops), the prompt's "duration" is the crop's length,
    not the track's: the text must describe the audio the loss actually sees, as it will at inference
    when a user asks for that many seconds. Only the (cheap) text side depends on it.

    Emits `phase` events (name "preprocess") and turns audio notes and cache rebuilds into
    `warning` events. A stop request between tracks raises StopNow, so run.py ends the job as stopped.
    `device`: where the encoders run on a cache miss (see encoders_on); returned tensors are on the CPU.
    """
    from trainer.job import StopNow

    def warn(msg: str) -> None:
        if ctx is not None:
            ctx.emit("warning", message=msg)

    total, t0, out = len(rows), time.time(), []
    if ctx is not None:
        ctx.phase("preprocess", 0, total)
    for i, row in enumerate(rows):
        if ctx is not None and ctx.stop_requested():
            raise StopNow(f"stop requested after preprocessing {i} of {total} tracks")
        lat, seconds = track_latents(pipe, row, model_id, max_seconds, warn, device)
        prompt_seconds = min(seconds, clip_seconds) if clip_seconds > 0 else seconds
        cond = track_conditioning(pipe, row, prompt_seconds, model_id, warn, device)
        out.append({"id": row.get("id"), "latents": lat, **cond,
                    "context_latents": context_latents(pipe, lat.shape[0]),
                    "seconds": seconds, "frames": int(lat.shape[0])})
        if ctx is not None:
            elapsed = time.time() - t0
            ctx.phase("preprocess", i + 1, total, eta_s=round(elapsed / (i + 1) * (total - i - 1), 1))
    return out


def free_encoders(pipe, keep_condition_encoder: bool = True) -> None:
    """Drop the encoders before training; their outputs are cached.

    Training keeps only a copy of `null_condition_emb` (condition dropout, guidance in previews), so it
    frees the condition encoder too (`keep_condition_encoder=False`).
    """
    names = ["vae", "text_encoder"] + ([] if keep_condition_encoder else ["condition_encoder"])
    for name in names:
        module = getattr(pipe, name, None)
        if module is not None:
            module.to("meta")  # frees the storage even if someone else still holds a reference
            setattr(pipe, name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- job

def read_manifest(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {n}: not valid JSON ({exc.msg}).") from exc
    base = Path(path).parent
    for row in rows:
        if "audio" not in row:
            raise ValueError(f"{path}: row {row.get('id')!r} has no 'audio' path.")
        if not Path(row["audio"]).is_absolute():
            row["audio"] = str(base / row["audio"])  # manifests may store paths relative to the dataset
    return rows


def job_preprocess(ctx, args) -> str:
    """Job kind "preprocess": params `manifest`, `model_id`, optional `device`, `max_seconds`.

    Fills the cache so the training job starts straight into its loop.
    """
    from trainer.model.load import load_pipeline, pick_device_dtype

    manifest = Path(ctx.params.get("manifest") or getattr(args, "manifest", None) or "")
    if not manifest.is_file():
        raise FileNotFoundError(f"Manifest not found: {manifest}")
    rows = [r for r in read_manifest(manifest) if r.get("status", "ok") != "error"]
    model_id = str(ctx.params.get("model_id") or ctx.params.get("model") or "")
    if not model_id:
        raise ValueError("No model_id given: choose a model on the Models page first.")
    device, dtype = pick_device_dtype(ctx.params.get("device"))
    with ctx.gpu_lease(device):
        ctx.phase("load", 0, 1)
        pipe = load_pipeline(model_id, device="cpu", dtype=dtype)  # the DiT is not needed: it stays on the CPU
        ctx.phase("load", 1, 1)
        items = preprocess_rows(pipe, rows, model_id, ctx=ctx, device=device,
                                max_seconds=float(ctx.params.get("max_seconds", 240.0)))
        del pipe
    ctx.emit("preprocessed", tracks=len(items), seconds=round(sum(i["seconds"] for i in items), 1),
             frames=sum(i["frames"] for i in items))
    return "completed"
