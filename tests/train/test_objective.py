"""trainer.train.objective: the model's own timestep distribution, padding kept out of the DiT, masked loss."""
from __future__ import annotations

import torch

from trainer.train.objective import TURBO_TIMESTEPS, Objective, compute_loss, dit_forward, make_batch


def test_release_sampler_single_draw_and_turbo_timesteps():
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    t = Objective("logit_normal_max2", -0.4, 1.0, 0.15).sample_t(400_000, cpu)
    # ACESTEP.md §3: the larger of two logit-normal draws gives mean t ~ 0.535 and P(t > 0.5) ~ 0.57
    assert abs(t.mean().item() - 0.535) < 0.003 and abs((t > 0.5).float().mean().item() - 0.57) < 0.004
    one = Objective("logit_normal", -0.4, 1.0, 0.15).sample_t(400_000, cpu)
    logit = torch.log(one / (1 - one))
    assert abs(logit.mean().item() + 0.4) < 0.01 and abs(logit.std().item() - 1.0) < 0.01
    assert abs(one.mean().item() - 0.418) < 0.003 and abs((one > 0.5).float().mean().item() - 0.34) < 0.004
    t8 = Objective("turbo_discrete", -0.4, 1.0, 0.0).sample_t(1000, cpu)
    assert set(t8.tolist()) <= set(torch.tensor(TURBO_TIMESTEPS).tolist()) and len(set(t8.tolist())) == 8


def test_condition_dropout_defaults_by_variant(tiny_pipe):
    from state.train.config import TrainConfig

    dit = tiny_pipe.transformer
    assert Objective.for_model(TrainConfig(), dit).cond_dropout == 0.15
    assert Objective.for_model(TrainConfig(cond_dropout=0.3), dit).cond_dropout == 0.3
    dit.register_to_config(is_turbo=True)  # a turbo model is sampled without guidance: dropout buys nothing
    assert Objective.for_model(TrainConfig(), dit).cond_dropout == 0.0
    assert Objective.for_model(TrainConfig(model_id="x/acestep-v15-turbo-diffusers"), dit).cond_dropout == 0.0


def _tracks(pipe, frames=(40, 26), tokens=(9, 6)):
    H = pipe.transformer.config.hidden_size
    D = pipe.transformer.config.audio_acoustic_hidden_dim
    out = []
    for T, L in zip(frames, tokens):
        mask = torch.zeros(L + 3, dtype=torch.bool)
        mask[:L] = True  # the condition encoder packs real tokens first, padding last
        out.append({"latents": torch.randn(T, D), "context_latents": torch.randn(T, 2 * D),
                    "encoder_hidden_states": torch.randn(L + 3, H), "encoder_attention_mask": mask})
    return out


def test_padded_batch_predicts_exactly_like_each_sample_alone(tiny_pipe):
    torch.manual_seed(0)
    dit = tiny_pipe.transformer
    tracks = _tracks(tiny_pipe)
    batch = make_batch(tracks, clip_frames=0, device=torch.device("cpu"))
    assert batch["padded"] and batch["latents"].shape[:2] == (2, 40) and batch["frame_mask"].sum() == 66
    x_t = torch.randn_like(batch["latents"])
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        both = dit_forward(dit, x_t, t, batch["encoder_hidden_states"], batch["context_latents"], batch)
        for i, (T, L) in enumerate([(40, 9), (26, 6)]):
            alone = dit(hidden_states=x_t[i:i + 1, :T], timestep=t[i:i + 1], timestep_r=t[i:i + 1],
                        encoder_hidden_states=batch["encoder_hidden_states"][i:i + 1, :L],
                        context_latents=batch["context_latents"][i:i + 1, :T], return_dict=False)[0]
            assert torch.allclose(both[i, :T], alone[0], atol=1e-6)
        assert both[1, 26:].abs().max() == 0  # padded frames predict nothing and are masked from the loss


def test_crops_take_context_from_frame_zero_and_loss_ignores_padding(tiny_pipe):
    torch.manual_seed(1)
    tracks = _tracks(tiny_pipe, frames=(60,), tokens=(7,))
    batch = make_batch(tracks, clip_frames=20, device=torch.device("cpu"))
    assert not batch["padded"] and batch["latents"].shape[1] == 20
    assert torch.equal(batch["context_latents"][0], tracks[0]["context_latents"][:20])
    assert batch["encoder_hidden_states"].shape[1] == 7  # padding tokens dropped
    null = tiny_pipe.condition_encoder.null_condition_emb.detach()
    obj = Objective("logit_normal", -0.4, 1.0, 0.15)
    loss = compute_loss(tiny_pipe.transformer, batch, null, obj, torch.float32)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_gradient_checkpointing_gives_the_same_lora_gradients(tiny_pipe):
    from state.train.config import TrainConfig
    from trainer.train.adapter import add_lora

    dit = tiny_pipe.transformer
    params = add_lora(dit, TrainConfig(rank=4, alpha=4.0, dropout=0.0))
    for p in params:  # lora_B starts at zero, which would leave lora_A without a gradient
        torch.nn.init.normal_(p, std=0.1)
    dit.train()
    batch = make_batch(_tracks(tiny_pipe), clip_frames=0, device=torch.device("cpu"))
    null = tiny_pipe.condition_encoder.null_condition_emb.detach()
    grads = []
    for ckpt in (False, True):
        dit.enable_gradient_checkpointing() if ckpt else dit.disable_gradient_checkpointing()
        torch.manual_seed(3)
        compute_loss(dit, batch, null, Objective("logit_normal", -0.4, 1.0, 0.0), torch.float32).backward()
        grads.append([p.grad.clone() for p in params])
        dit.zero_grad(set_to_none=True)
    assert all(g.abs().sum() > 0 for g in grads[1])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
