"""Validation loss at fixed timesteps and fixed noise: the number that shows progress.

A flow-matching training loss is dominated by which timesteps and noise each step happened to draw
(ACESTEP.md §4), so its curve cannot say whether the adapter is still learning or already
overfitting. Validation removes both sources of noise: every track is evaluated at the same
`val_timesteps` values spread evenly over (0, 1), with one noise tensor per track drawn once from
its own seeded generator, and with its real condition (no condition dropout). The same inputs at
every validation make losses comparable across steps, resumes and runs with the same data.

It draws nothing from the global RNG and switches the transformer back to train mode afterwards,
so a run with validation trains exactly the adapter a run without it trains.
"""
from __future__ import annotations

import torch

MAX_FRAMES_PER_CALL = 12_000  # timesteps of one track share a DiT call up to this many latent frames


class Validator:
    def __init__(self, cfg, tracks: list[dict], clip_frames: int, held_out: bool, precision, device):
        self.cfg, self.precision, self.device, self.held_out = cfg, precision, device, held_out
        k = cfg.val_timesteps
        self.timesteps = [(i + 0.5) / k for i in range(k)]
        self.items = []
        for i, tr in enumerate(tracks):
            n = min(tr["latents"].shape[0], clip_frames) if clip_frames > 0 else tr["latents"].shape[0]
            x0 = tr["latents"][:n].float()                                        # (n, C): a fixed crop from 0
            g = torch.Generator("cpu").manual_seed(cfg.seed * 7919 + 104_729 + i)
            self.items.append({"x0": x0, "noise": torch.randn(x0.shape, generator=g),
                               "context": tr["context_latents"][:n],
                               "ehs": tr["encoder_hidden_states"][tr["encoder_attention_mask"].bool()]})
        self.best_loss: float | None = None
        self.best_step: int | None = None
        self.since_best = 0  # validations without a new best, for early stopping

    def due(self, step: int, final: bool = False) -> bool:
        return bool(self.items) and self.cfg.val_every > 0 and (step % self.cfg.val_every == 0 or final)

    @torch.no_grad()
    def evaluate(self, transformer) -> list[float]:
        """Mean loss per fixed timestep over the validation tracks."""
        was_training = transformer.training
        transformer.eval()
        sums = torch.zeros(len(self.timesteps), dtype=torch.float64)
        try:
            for it in self.items:
                sums += self._track_losses(transformer, it).double().cpu()
        finally:
            transformer.train(was_training)
        return (sums / len(self.items)).tolist()

    def _track_losses(self, transformer, it: dict) -> torch.Tensor:
        dtype, dev = self.precision.base, self.device
        x0, noise = it["x0"].to(dev), it["noise"].to(dev)                         # (n, C)
        per_call = max(1, MAX_FRAMES_PER_CALL // x0.shape[0])
        out = []
        for s in range(0, len(self.timesteps), per_call):
            t = torch.tensor(self.timesteps[s:s + per_call], device=dev)         # (k,)
            tt = t.view(-1, 1, 1)
            x_t = tt * noise + (1 - tt) * x0                                     # (k, n, C)
            k = t.shape[0]
            with self.precision.autocast():
                pred = transformer(hidden_states=x_t.to(dtype), timestep=t.to(dtype), timestep_r=t.to(dtype),
                                   encoder_hidden_states=it["ehs"].to(dev, dtype).expand(k, -1, -1),
                                   context_latents=it["context"].to(dev, dtype).expand(k, -1, -1),
                                   return_dict=False)[0]
            out.append((pred.float() - (noise - x0)).pow(2).mean(dim=(1, 2)))    # (k,)
        return torch.cat(out)

    def record(self, step: int, per_t: list[float]) -> dict:
        """The `validation` event's fields; updates the best so far."""
        loss = sum(per_t) / len(per_t)
        best = self.best_loss is None or loss < self.best_loss
        if best:
            self.best_loss, self.best_step, self.since_best = loss, step, 0
        else:
            self.since_best += 1
        return {"step": step, "loss": loss, "timesteps": [round(t, 4) for t in self.timesteps],
                "per_timestep": per_t, "best": best, "best_step": self.best_step, "best_loss": self.best_loss,
                "tracks": len(self.items), "held_out": self.held_out}

    @property
    def patience_ran_out(self) -> bool:
        p = self.cfg.early_stop_patience
        return bool(p) and self.since_best >= p

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "best_step": self.best_step, "since_best": self.since_best}

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.best_loss, self.best_step = state.get("best_loss"), state.get("best_step")
            self.since_best = int(state.get("since_best") or 0)
