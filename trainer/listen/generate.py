"""Generation with and without a LoRA adapter: the `ab` job kind, and the renderer training previews use.

Inference runs only in this job's own process, never inside training (ACESTEP.md §4: an adapter
loaded right after training in the same process gave garbled audio).

Fair comparisons:
- every output of a comparison starts from the same initial noise: one seeded tensor, drawn once,
  passed to each pipeline call as `latents` (the pipeline has no other randomness);
- the base is the same loaded pipeline with its LoRA layers switched off (`pipe.disable_lora()`),
  and an adapter's strength is set with `pipe.set_adapters([name], adapter_weights=[scale])`,
  which sets peft's per-layer `scaling` on the LoRA layers only, never a base weight (§4: a scale
  control that touched non-LoRA modules corrupted the base). Scale 0 is therefore exactly the base;
  tests/test_ab_generate.py checks it bit for bit;
- outputs are loudness-matched (trainer/listen/loudness.py) before they are written.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from state.fsutil import write_json
from state.listen import ab
from trainer.job import StopNow

SUBTYPE = "PCM_24"  # 24-bit WAV: every browser's <audio> plays it, and it keeps the float render's detail
PHASE_EVERY_S = 0.25  # progress events at most this often


class AdapterLoadError(RuntimeError):
    """An adapter folder that cannot be loaded onto this pipeline; the message says which and why."""


# ---- adapters --------------------------------------------------------------------------------

def load_adapter(pipe, source: Path, name: str) -> int:
    """Attach the adapter in `source` (a run's final/ or a checkpoint folder) as `name`; returns tensors loaded.

    final/ goes through diffusers' own `load_lora_weights`, exactly as a user of the export would
    load it (its header carries rank, alpha and dropout 0). A checkpoint holds bare tensors, so its
    LoraConfig comes from the run config saved with it, with dropout 0: diffusers leaves LoRA dropout
    in training mode, which would make every render random. Either way every tensor is read back
    and compared, so an adapter that silently failed to load is an error, not a quiet base render.
    """
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    from state.train.config import TrainConfig
    from trainer.train.adapter import adapter_config, inference_metadata
    from trainer.train.checkpoint import ADAPTER_FILE, read_meta
    from trainer.train.export import DIFFUSERS_FILE

    source = Path(source)
    if (source / DIFFUSERS_FILE).is_file():
        tensors = {k.removeprefix("transformer."): v for k, v in load_file(str(source / DIFFUSERS_FILE)).items()}
        if any(".lokr_" in k for k in tensors):  # the pipeline's loader refuses LoKr keys; the transformer's reads them
            pipe.transformer.load_lora_adapter(str(source), weight_name=DIFFUSERS_FILE, prefix="transformer",
                                               adapter_name=name)
        else:
            pipe.load_lora_weights(str(source), weight_name=DIFFUSERS_FILE, adapter_name=name)
    elif (source / ADAPTER_FILE).is_file() and (source / "meta.json").is_file():
        cfg = TrainConfig.from_dict({**read_meta(source)["config"], "dropout": 0.0})
        meta = inference_metadata(adapter_config(cfg))
        tensors = load_file(str(source / ADAPTER_FILE))
        pipe.transformer.load_lora_adapter({f"transformer.{k}": v for k, v in tensors.items()}, prefix="transformer",
                                           adapter_name=name, metadata={f"transformer.{k}": v for k, v in meta.items()})
    else:
        raise AdapterLoadError(f"{source} holds no adapter: expected {DIFFUSERS_FILE} (a run's final/) or "
                               f"{ADAPTER_FILE} + meta.json (a checkpoint).")
    loaded = get_peft_model_state_dict(pipe.transformer, adapter_name=name)
    missing = sorted(set(tensors) - set(loaded))
    unequal = [k for k in tensors if k in loaded and not torch.equal(loaded[k].float().cpu(), tensors[k].float())]
    if missing or unequal or len(loaded) != len(tensors):
        raise AdapterLoadError(f"Adapter {source} did not load completely ({len(missing)} missing, {len(unequal)} "
                               f"different, e.g. {(missing + unequal)[:2]}); was it trained on this base model?")
    return len(tensors)


def use_adapter(pipe, name: str | None, scale: float = 1.0) -> None:
    """Switch to the base (name None) or to one adapter at `scale`; only LoRA layers change."""
    has_lora = bool(getattr(pipe.transformer, "peft_config", None))
    if name is None:
        if has_lora:
            pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters([name], adapter_weights=[float(scale)])


# ---- rendering -------------------------------------------------------------------------------

def initial_noise(pipe, seed: int, seconds: float) -> torch.Tensor:
    """The seeded starting noise (1, frames, acoustic_dim), drawn on the CPU so a seed means the same
    noise on every device, then moved to the pipeline's device."""
    frames = int(np.ceil(seconds * pipe.latents_per_second))
    dim = pipe.transformer.config.audio_acoustic_hidden_dim
    g = torch.Generator("cpu").manual_seed(int(seed))
    noise = torch.randn((1, frames, dim), generator=g, dtype=torch.float32)
    return noise.to(device=pipe._execution_device, dtype=pipe.transformer.dtype)


def render(pipe, prompt: dict, latents: torch.Tensor, steps: int, shift: float, guidance: float,
           on_step=None) -> np.ndarray:
    """One text2music generation from `latents`; returns (2, samples) float32 at pipe.sample_rate.

    `on_step(i)` is called after each denoising step (the pipeline's callback_on_step_end).
    """
    with torch.no_grad():
        out = pipe(**_call_inputs(prompt, latents, steps, shift, guidance, on_step))
    return out.audios[0].float().cpu().numpy()  # (2, samples)


def generate_latents(pipe, prompt: dict, latents: torch.Tensor, steps: int, shift: float, guidance: float,
                     on_step=None) -> torch.Tensor:
    """`render` without the VAE decode: the denoised latents (B, frames, C), one per row of `latents`
    (B seeded noises for the same prompt, generated as one batch)."""
    with torch.no_grad():
        out = pipe(**_call_inputs(prompt, latents, steps, shift, guidance, on_step), output_type="latent")
    return out.audios.float().cpu()


def _call_inputs(prompt: dict, latents: torch.Tensor, steps: int, shift: float, guidance: float, on_step) -> dict:
    """The pipeline's text2music arguments for `prompt`, repeated for each row of `latents`."""
    def callback(_pipe, i, _t, kwargs):
        if on_step is not None:
            on_step(i)
        return kwargs

    n = latents.shape[0]
    return dict(prompt=[prompt.get("caption") or ""] * n, lyrics=[prompt.get("lyrics") or "[Instrumental]"] * n,
                audio_duration=float(prompt.get("duration") or 10.0),
                vocal_language=prompt.get("vocal_language") or "unknown",
                bpm=int(prompt["bpm"]) if prompt.get("bpm") else None,
                keyscale=prompt.get("keyscale") or None, timesignature=_timesig(prompt.get("timesignature")),
                num_inference_steps=int(steps), shift=float(shift), guidance_scale=float(guidance),
                latents=latents.clone(), callback_on_step_end=callback)


@torch.no_grad()
def denoise(transformer, scheduler, cond: torch.Tensor, context: torch.Tensor, latents: torch.Tensor, steps: int,
            shift: float, guidance: float, null: torch.Tensor | None = None, on_step=None) -> torch.Tensor:
    """AceStepPipeline's text2music denoising loop on conditioning that is already encoded.

    Training previews use it: by then the text and condition encoders are freed and only their
    outputs remain, so the pipeline's own __call__ (which re-encodes the prompt) cannot run. Same
    schedule (`shift * t / (1 + (shift - 1) * t)`), same scheduler steps, same APG guidance against
    `null` (the learned null condition) from diffusers' guider; tests/listen/test_previews.py checks
    it equals the pipeline's latents exactly. Shapes: cond (1, L, H), context (1, T, 2C), latents (1, T, C).
    """
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance

    batch, device, dtype = latents.shape[0], latents.device, latents.dtype
    do_cfg = guidance > 1.0 and null is not None
    t = torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float32)
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    scheduler.set_timesteps(sigmas=t[:-1].tolist(), device=device)
    momentum = MomentumBuffer(momentum=-0.75) if do_cfg else None
    xt = latents
    for i, ts in enumerate(scheduler.timesteps):
        tt = float(ts) * torch.ones((batch,), device=device, dtype=dtype)
        if do_cfg:  # (cond, null) stacked on the batch: one DiT call, as the pipeline does
            out = transformer(hidden_states=torch.cat([xt, xt]), timestep=torch.cat([tt, tt]),
                              timestep_r=torch.cat([tt, tt]),
                              encoder_hidden_states=torch.cat([cond, null.to(cond.dtype).expand_as(cond)]),
                              context_latents=torch.cat([context, context]), return_dict=False)[0]
            v_cond, v_null = out.chunk(2, dim=0)
            vt = normalized_guidance(pred_cond=v_cond, pred_uncond=v_null, guidance_scale=guidance - 1.0,
                                     momentum_buffer=momentum, eta=0.0, norm_threshold=2.5,
                                     use_original_formulation=True, norm_dim=(1,))
        else:
            vt = transformer(hidden_states=xt, timestep=tt, timestep_r=tt, encoder_hidden_states=cond,
                             context_latents=context, return_dict=False)[0]
        xt = scheduler.step(vt, ts, xt, return_dict=False)[0]
        if on_step is not None:
            on_step(i)
    return xt


def _timesig(v) -> str | None:
    """The pipeline wants the numerator ("4"); labels may say "4/4"."""
    return str(v).split("/")[0].strip() if v not in (None, "") else None


def write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    """(2, n) float -> 24-bit stereo WAV, via a temp name so a reader never sees half a file."""
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), np.clip(audio.T, -1.0, 1.0), sr, subtype=SUBTYPE, format="WAV")
    tmp.replace(path)


class Progress:
    """`phase` events named "generate" over all renders of a job, throttled, with an ETA."""

    def __init__(self, ctx, total: int, name: str = "generate"):
        self.ctx, self.total, self.name = ctx, total, name
        self.done, self.t0, self.last = 0, time.time(), 0.0

    def step(self, *_):
        self.done += 1
        if self.ctx.stop_requested():
            raise StopNow("stop requested during generation")
        now = time.time()
        if now - self.last >= PHASE_EVERY_S or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-6)
            self.ctx.phase(self.name, self.done, self.total, round((self.total - self.done) / rate, 1))


# ---- the `ab` job ------------------------------------------------------------------------------

def job_ab(ctx, args) -> str:
    """Render every output of the request in params.json, loudness-match, write WAVs and meta.json."""
    from trainer.listen.loudness import match
    from trainer.model.load import pick_device_dtype

    comp = Path(ctx.job_dir)
    req = ab.ABRequest.from_dict(ctx.params)
    settings = ab.default_settings(comp.parent.parent)
    model_id = settings["model_id"]
    if not model_id:
        raise ab.ABError(f"{comp.parent.parent} has no config.json naming its base model.")
    plan = ab.plan_outputs(req)
    device, dtype = pick_device_dtype(None if req.device == "auto" else req.device)
    with ctx.gpu_lease(device):  # never beside a training run's model on the same GPU
        audios, sample_rate = _render_all(ctx, req, plan, model_id, device, dtype)

    matched, report = match(audios, sample_rate)
    outputs = []
    for o, audio, k in zip(plan, matched, range(len(plan))):
        path = ab.output_path(comp, o["key"])
        write_wav(path, audio, sample_rate)
        outputs.append({**o, "file": path.name, "seconds": audio.shape[-1] / sample_rate,
                        "loudness": report.loudness_after[k], "gain_db": report.gain_db[k],
                        "true_peak_dbtp": report.true_peak_after_dbtp[k]})
    write_json(comp / ab.META_FILE, {
        "comparison": comp.name, "run_id": comp.parent.parent.name, "created_at": time.time(),
        "request": req.to_dict(), "model_id": model_id, "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "sample_rate": sample_rate, "outputs": outputs,
        "loudness": report.to_dict(), "blind": ab.assign_blind([o["key"] for o in outputs]),
    })
    ctx.emit("result", comparison=comp.name, files=[o["file"] for o in outputs], loudness=report.to_dict())
    return "completed"


def _render_all(ctx, req, plan: list[dict], model_id: str, device, dtype) -> tuple[list, int]:
    """Every output of the comparison, rendered from one seeded noise: (audios, sample rate). The
    pipeline dies with this call, before the GPU lease is given back."""
    from trainer.model.load import load_pipeline

    ctx.phase("load", 0, 1)
    pipe = load_pipeline(model_id, device=device, dtype=dtype)
    names = {}
    for i, src in enumerate(dict.fromkeys(o["source"] for o in plan if o["source"])):
        names[src] = f"ab{i}"
        load_adapter(pipe, Path(src), names[src])
    ctx.phase("load", 1, 1)

    latents = initial_noise(pipe, req.seed, float(req.prompt.get("duration", 10.0)))
    progress = Progress(ctx, len(plan) * req.steps)
    audios = []
    for o in plan:
        use_adapter(pipe, names.get(o["source"]), o["scale"])
        audios.append(render(pipe, req.prompt, latents, req.steps, req.shift, req.guidance, progress.step))
    use_adapter(pipe, None)
    return audios, pipe.sample_rate
