"""The training objective, exactly the model's own (ACESTEP.md §3), and the batches it eats.

    t   = max(u1, u2), u = sigmoid(N(0,1) * sigma + mu)   the release's sample_t_r: the larger of two
                                                         logit-normal draws, mu=-0.4, sigma=1.0, no shift
    x_t = t * noise + (1 - t) * x0
    loss = MSE(DiT(x_t, t, cond), noise - x0)     over valid (unpadded) latent frames only
    15% of samples see `null_condition_emb` instead of their condition (what makes guidance work);
    0% on turbo models, which are sampled without guidance, so dropout would buy nothing

The single draw (mean t 0.418) and the 8 turbo steps stay available as named options.

All randomness comes from torch's global generator, whose state the checkpoint saves, so a resumed
run draws the same crops, noise, timesteps and dropout as an uninterrupted one.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

# The turbo model's fixed 8-step schedule (shift 3); upstream's trainer samples only these.
TURBO_TIMESTEPS = (1.0, 0.9545, 0.9, 0.8333, 0.75, 0.6429, 0.5, 0.3)


@dataclass(frozen=True)
class Objective:
    sampling: str        # logit_normal_max2 | logit_normal | turbo_discrete (state.train.config.SAMPLINGS)
    mu: float
    sigma: float
    cond_dropout: float

    @classmethod
    def for_model(cls, cfg, transformer) -> "Objective":
        """mu/sigma: the config's if set, else the model config's, else the release's -0.4 / 1.0.
        Condition dropout: the config's if set, else 0.15, or 0 for a turbo model."""
        from state.model.catalog import variant_of

        mc = transformer.config
        mu = cfg.timestep_mu if cfg.timestep_mu is not None else float(mc.get("timestep_mu", -0.4))
        sigma = cfg.timestep_sigma if cfg.timestep_sigma is not None else float(mc.get("timestep_sigma", 1.0))
        turbo = bool(mc.get("is_turbo")) or variant_of(cfg.model_id) == "turbo"
        dropout = cfg.cond_dropout if cfg.cond_dropout is not None else (0.0 if turbo else 0.15)
        return cls(cfg.timestep_sampling, mu, sigma, dropout)

    def sample_t(self, n: int, device: torch.device) -> torch.Tensor:
        if self.sampling == "turbo_discrete":
            table = torch.tensor(TURBO_TIMESTEPS, device=device)
            return table[torch.randint(len(table), (n,), device=device)]
        draw = torch.sigmoid(torch.randn(n, device=device) * self.sigma + self.mu)
        if self.sampling == "logit_normal_max2":
            return torch.maximum(draw, torch.sigmoid(torch.randn(n, device=device) * self.sigma + self.mu))
        return draw


def make_batch(tracks: list[dict], clip_frames: int, device: torch.device) -> dict:
    """Crop, pad and stack tracks. When lengths differ, masks mark real frames / tokens (1) vs padding (0).

    Latents are cropped at a random offset; the context is always its first `n` frames, because
    the pipeline builds the text2music context for an n-frame song from frame 0 of the silence
    latent, and training must show the DiT the inputs inference will give it.
    """
    x0, ctx, ehs = [], [], []
    for tr in tracks:
        T = tr["latents"].shape[0]
        n = min(T, clip_frames) if clip_frames > 0 else T
        off = int(torch.randint(T - n + 1, ()).item())
        x0.append(tr["latents"][off:off + n])                        # (n, D)
        ctx.append(tr["context_latents"][:n])                        # (n, C)
        mask = tr["encoder_attention_mask"].bool()
        ehs.append(tr["encoder_hidden_states"][mask])                # (L_valid, H): real tokens only
    padded = len({len(x) for x in x0}) > 1 or len({len(e) for e in ehs}) > 1
    if not padded:  # the usual case (batch 1, or equal crops): a plain stack, no masks needed
        batch = {"latents": torch.stack(x0), "context_latents": torch.stack(ctx), "encoder_hidden_states": torch.stack(ehs)}
    else:
        batch = {
            "latents": _pad(x0), "context_latents": _pad(ctx), "encoder_hidden_states": _pad(ehs),
            "frame_mask": _lengths_mask([len(x) for x in x0]),           # (B, T)
            "encoder_attention_mask": _lengths_mask([len(e) for e in ehs]),  # (B, L)
        }
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    batch["padded"] = padded
    return batch


def compute_loss(transformer, batch: dict, null_emb: torch.Tensor, obj: Objective,
                 dtype: torch.dtype) -> torch.Tensor:
    """Flow-matching velocity loss on one batch; returns a scalar fp32 tensor."""
    x0 = batch["latents"].float()                                    # (B, T, D)
    B, device = x0.shape[0], x0.device
    t = obj.sample_t(B, device)                                      # (B,)
    noise = torch.randn_like(x0)
    tt = t.view(B, 1, 1)
    x_t = tt * noise + (1 - tt) * x0
    target = noise - x0
    ehs = batch["encoder_hidden_states"]                             # (B, L, H)
    drop = (torch.rand(B, device=device) < obj.cond_dropout).view(B, 1, 1)
    ehs = torch.where(drop, null_emb.to(ehs.dtype).expand_as(ehs), ehs)
    pred = dit_forward(transformer, x_t.to(dtype), t.to(dtype), ehs.to(dtype),
                       batch["context_latents"].to(dtype), batch)
    if not batch["padded"]:
        return torch.nn.functional.mse_loss(pred.float(), target)
    err = (pred.float() - target).pow(2).mean(-1)                    # (B, T)
    fm = batch["frame_mask"].float()
    return (err * fm).sum() / fm.sum()                               # mean over real frames only


def dit_forward(transformer, x_t, t, ehs, context, batch) -> torch.Tensor:
    """The DiT's velocity prediction, with padding kept out of attention.

    diffusers 0.42's AceStepTransformer1DModel.forward takes no padding masks (its blocks are called
    with encoder_attention_mask=None, and self-attention has no padding mask), so padded frames or
    condition tokens would leak into attention. When the forward accepts the mask we pass it;
    otherwise samples are run in groups of equal (frames, tokens), unpadded, which is exact. An
    unpadded batch (batch size 1, or equal crops of long tracks: the usual case) is one plain call.
    """
    if not batch["padded"]:
        return transformer(hidden_states=x_t, timestep=t, timestep_r=t, encoder_hidden_states=ehs,
                           context_latents=context, return_dict=False)[0]
    frame_mask, enc_mask = batch["frame_mask"], batch["encoder_attention_mask"]
    if _forward_takes_mask(transformer):
        return transformer(hidden_states=x_t, timestep=t, timestep_r=t, encoder_hidden_states=ehs,
                           encoder_attention_mask=enc_mask, context_latents=context, return_dict=False)[0]
    lengths = list(zip(frame_mask.sum(1).tolist(), enc_mask.sum(1).tolist()))
    out = torch.zeros_like(x_t)
    for n, L in sorted(set(lengths)):
        idx = torch.tensor([i for i, nl in enumerate(lengths) if nl == (n, L)], device=x_t.device)
        out[idx, :n] = transformer(hidden_states=x_t[idx, :n], timestep=t[idx], timestep_r=t[idx],
                                   encoder_hidden_states=ehs[idx, :L], context_latents=context[idx, :n],
                                   return_dict=False)[0].to(out.dtype)
    return out


def _forward_takes_mask(transformer) -> bool:
    fwd = getattr(transformer, "forward")
    return "encoder_attention_mask" in inspect.signature(fwd).parameters


def _pad(seqs: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)


def _lengths_mask(lengths: list[int]) -> torch.Tensor:
    return torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
