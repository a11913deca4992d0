"""Training previews, rendered inside the training process from the live transformer.

Why in-process: a separate render job would load a second copy of the DiT next to training on the
same GPU, which is what used to kill runs on small GPUs (DESIGN.md "One GPU, many jobs"). Here the
preview uses the transformer being trained, as trained (LoRA on, eval mode so LoRA dropout is off,
no_grad), the preview prompt's conditioning encoded once before the encoders were freed, and the
VAE (kept on the CPU between previews, on the GPU only while it decodes). Nothing is loaded into the
model, so ACESTEP.md §4's "an adapter loaded right after training in the same process gave garbled
audio" does not arise. Afterwards the transformer goes back to train mode and every RNG state is
restored, so a run with previews trains exactly the adapter a run without them trains.

Due: a step-0 baseline and every `sample_every` steps when that is > 0, the last step, and whenever
`control/sample_now` is set. Each preview writes `samples/step-NNNNNN.wav` (loudness-normalised, so
previews across steps compare by content, not level) with a `.json` beside it, and a `sample` event.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from state.fsutil import write_json
from state.listen import ab


class Previews:
    """The training loop's side of previews: `prepare` once, then one-line `maybe(step)` calls."""

    def __init__(self, ctx, cfg, precision):
        self.ctx, self.cfg, self.precision = ctx, cfg, precision
        self.run_dir = Path(ctx.job_dir)
        self.ready = False
        self.last_step: int | None = None

    @property
    def periodic(self) -> bool:
        return self.cfg.sample_every > 0

    # ---- before the encoders are freed ---------------------------------------------------------

    def prepare(self, pipe, model_id: str, device=None) -> None:
        """Encode the preview prompt (cached like training conditioning; the encoders run on `device` on a
        miss) and keep what rendering needs: the null condition, the context latents, a scheduler, and the
        VAE, which moves to the CPU and leaves the pipeline (so freeing the encoders does not free it)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        from state.model.catalog import info_for
        from trainer.dataset.preprocess import context_latents, track_conditioning

        self.request = preview_request(self.run_dir, self.cfg)
        seconds = self.request["prompt"]["duration"]
        cond = track_conditioning(pipe, {"id": "preview", **self.request["prompt"]}, seconds, model_id, device=device)
        mask = cond["encoder_attention_mask"].bool()
        self.cond = cond["encoder_hidden_states"][mask].unsqueeze(0)             # (1, L, H): real tokens only
        self.null = pipe.condition_encoder.null_condition_emb.detach().float().cpu().clone()  # (1, 1, H)
        self.frames = int(round(seconds * pipe.latents_per_second))
        self.context = context_latents(pipe, self.frames).unsqueeze(0)          # (1, T, 2C)
        self.dim = pipe.transformer.config.audio_acoustic_hidden_dim
        self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        self.vae = pipe.vae.to("cpu")
        pipe.vae = None
        self.sample_rate = pipe.sample_rate
        turbo = bool(pipe.transformer.config.get("is_turbo")) or info_for(model_id).variant == "turbo"
        self.guidance = 1.0 if turbo else float(self.request["guidance"])
        self.ready = True

    # ---- in the loop ---------------------------------------------------------------------------

    def maybe(self, step: int, transformer, final: bool = False) -> None:
        asked = self.ctx.take_flag("sample_now")
        due = self.periodic and (step % self.cfg.sample_every == 0 or final)
        if self.ready and (asked or due) and step != self.last_step:
            self.render(step, transformer)

    def render(self, step: int, transformer) -> Path:
        from trainer.listen.generate import denoise, write_wav
        from trainer.listen.loudness import match

        t0 = time.time()
        req = self.request
        self.ctx.phase("sample", 0, req["steps"], step=step)
        device, dtype = next(transformer.parameters()).device, self.precision.base
        rng = _rng_state(device)
        was_training = transformer.training
        transformer.eval()
        try:
            g = torch.Generator("cpu").manual_seed(int(req["seed"]))  # the same noise for every preview
            noise = torch.randn((1, self.frames, self.dim), generator=g, dtype=torch.float32)
            with self.precision.autocast():
                latents = denoise(transformer, self.scheduler, self.cond.to(device, dtype),
                                  self.context.to(device, dtype), noise.to(device, dtype), req["steps"],
                                  req["shift"], self.guidance, self.null.to(device, dtype),
                                  on_step=lambda i: self.ctx.phase("sample", i + 1, req["steps"], step=step))
            audio = self._decode(latents, device)
        finally:
            transformer.train(was_training)
            _set_rng_state(rng, device)
        [audio], report = match([audio], self.sample_rate)
        wav = ab.samples_dir(self.run_dir) / f"step-{step:06d}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        write_wav(wav, audio, self.sample_rate)
        write_json(wav.with_suffix(".json"), {**req, "step": step, "file": wav.name, "loudness": report.to_dict(),
                                              "sample_rate": self.sample_rate, "guidance": self.guidance,
                                              "render_s": round(time.time() - t0, 2), "created_at": time.time()})
        self.ctx.emit("sample", step=step, path=str(wav))
        self.last_step = step
        return wav

    @torch.no_grad()
    def _decode(self, latents: torch.Tensor, device: torch.device):
        """VAE decode on the training device, then the VAE goes back to the CPU: (2, samples) float32."""
        self.vae.to(device)
        try:
            audio = self.vae.decode(latents.transpose(1, 2).to(self.vae.dtype)).sample  # (1, 2, samples)
        finally:
            self.vae.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        return audio[0].float().cpu().numpy()


def preview_request(run_dir: Path, cfg) -> dict:
    """The fixed preview: the config's prompt, else the first training track's labels."""
    tracks = ab.dataset_tracks(run_dir)
    prompt = dict(cfg.sample_prompt) or (ab.prompt_from_track(tracks[0]) if tracks else {})
    prompt["caption"] = prompt.get("caption") or "instrumental music"
    prompt["duration"] = float(cfg.sample_seconds)
    d = ab.default_settings(run_dir)
    return {"prompt": prompt, "seed": cfg.sample_seed, "steps": cfg.sample_steps or d["steps"],
            "shift": cfg.shift, "guidance": d["guidance"], "model_id": cfg.model_id}


def _rng_state(device: torch.device) -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
