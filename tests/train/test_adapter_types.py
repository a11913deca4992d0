"""DoRA and LoKr beside LoRA: each trains on the tiny model, exports both formats, and loads where its
consumers load it: diffusers (DoRA through load_lora_weights, LoKr through the transformer's
load_lora_adapter, which the Train page names), and the official ACE-Step UI's PeftModel.from_pretrained
on the release's module names. The merged export equals base + adapter at the chosen scale."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from train_kit import adapter_tensors, end_of, read_events

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "gate_proj"]
RELEASE_NAMES = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj"}


def _forward(transformer, seed=0):
    """One DiT forward on fixed random inputs shaped like the tiny model's."""
    c = transformer.config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, c.audio_acoustic_hidden_dim, generator=g)
    ctx = torch.randn(1, 16, c.in_channels - c.audio_acoustic_hidden_dim, generator=g)
    enc = torch.randn(1, 5, c.hidden_size, generator=g)
    t = torch.tensor([0.6])
    with torch.no_grad():
        return transformer(hidden_states=x, timestep=t, timestep_r=t, encoder_hidden_states=enc,
                           context_latents=ctx).sample


def _release_decoder(transformer) -> torch.nn.Module:
    """The base DiT's projections under the release's names (`layers.N.self_attn.q_proj`, ...): the tree
    the official UI hands to PeftModel.from_pretrained."""
    root = torch.nn.Module()
    root.layers = torch.nn.ModuleList()
    for layer in transformer.layers:
        out = torch.nn.Module()
        for block in ("self_attn", "cross_attn"):
            attn, named = getattr(layer, block), torch.nn.Module()
            for ours, theirs in RELEASE_NAMES.items():
                setattr(named, theirs, copy.deepcopy(getattr(attn, ours)))
            named.o_proj = copy.deepcopy(attn.to_out[0])
            setattr(out, block, named)
        out.mlp = copy.deepcopy(layer.mlp)
        root.layers.append(out)
    return root


def _projections(transformer, release):
    """(ours, theirs) pairs of every adapted Linear."""
    for i, layer in enumerate(transformer.layers):
        theirs = release.base_model.model.layers[i]
        for block in ("self_attn", "cross_attn"):
            for ours, name in RELEASE_NAMES.items():
                yield getattr(getattr(layer, block), ours), getattr(getattr(theirs, block), name)
            yield getattr(layer, block).to_out[0], getattr(theirs, block).o_proj
        yield layer.mlp.gate_proj, theirs.mlp.gate_proj


@pytest.mark.parametrize("kind", ["dora", "lokr"])
def test_adapter_type_trains_exports_and_loads(kind, train_kit, tiny_model_dir):
    from diffusers import AceStepPipeline
    from peft import PeftModel

    from trainer.listen.generate import load_adapter, use_adapter
    from trainer.model.load import load_pipeline

    job = train_kit.run_dir(f"adapter-{kind}", adapter_type=kind, max_steps=8, learning_rate=1e-2, rank=4,
                            alpha=8.0, target_modules=TARGETS, merged_scale=0.5, checkpoint_every=4)
    assert train_kit.run(job) == 0 and end_of(job)["status"] == "completed"
    final = job / "final"

    # the files: release names, the right peft type, the trained tensors in both
    acfg = json.loads((final / "adapter_config.json").read_text())
    ours = adapter_tensors(final / "pytorch_lora_weights.safetensors")
    theirs = adapter_tensors(final / "adapter_model.safetensors")
    if kind == "dora":
        assert acfg["peft_type"] == "LORA" and acfg["use_dora"] is True and acfg["lora_alpha"] == 8.0
        assert "base_model.model.layers.0.self_attn.q_proj.lora_magnitude_vector" in theirs
    else:
        assert acfg["peft_type"] == "LOKR" and acfg["alpha"] == 8.0 and acfg["r"] == 4
        assert "base_model.model.layers.1.cross_attn.o_proj.lokr_w1" in theirs
    assert sorted(acfg["target_modules"]) == ["gate_proj", "k_proj", "o_proj", "q_proj", "v_proj"]
    assert len(ours) == len(theirs) and not any("to_q" in k or "to_out" in k for k in theirs)
    meta = json.loads((final / "training_meta.json").read_text())
    assert meta["adapter_type"] == kind

    # diffusers: the loader a user of that type calls, every tensor as trained, and it changes the output
    base_pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    def fresh():  # a new transformer on shared other parts: a load per pipeline costs seconds on a busy CI
        return AceStepPipeline(**{**base_pipe.components, "transformer": copy.deepcopy(base_pipe.transformer)})

    base_out = _forward(base_pipe.transformer)
    pipe = fresh()
    if kind == "dora":
        pipe.load_lora_weights(str(final), adapter_name="d")
        from_release = fresh()
        from_release.load_lora_weights(str(final), weight_name="adapter_model.safetensors", adapter_name="o")
        assert torch.allclose(_forward(from_release.transformer), _forward(pipe.transformer), atol=1e-6)
    else:
        with pytest.raises(ValueError, match="LoRA param names"):  # what the Train page warns of
            fresh().load_lora_weights(str(final))
        pipe.transformer.load_lora_adapter(str(final), weight_name="pytorch_lora_weights.safetensors",
                                           prefix="transformer", adapter_name="d")
    adapted = _forward(pipe.transformer)
    assert (adapted - base_out).abs().max() > 1e-3
    assert load_adapter(fresh(), final, "x") == len(ours)
    ckpt = sorted((job / "checkpoints").glob("step-*"))[-1]  # what A/B loads: bare tensors + the run's config
    from_ckpt = fresh()
    assert load_adapter(from_ckpt, ckpt, "c") == len(ours)
    assert torch.allclose(_forward(from_ckpt.transformer), adapted, atol=1e-6)

    # the official ACE-Step UI: peft wraps the release-named decoder from adapter_config.json alone
    release = PeftModel.from_pretrained(_release_decoder(base_pipe.transformer), str(final), is_trainable=False).eval()
    x = torch.randn(3, base_pipe.transformer.config.hidden_size, generator=torch.Generator().manual_seed(1))
    pairs = list(_projections(pipe.transformer, release))
    assert len(pairs) == 2 * 2 * 4 + 2
    with torch.no_grad():
        for a, b in pairs:
            assert torch.allclose(a(x), b(x), atol=1e-5)

    # merged/: a whole pipeline equal to base + adapter at the chosen scale (0.5)
    merged = AceStepPipeline.from_pretrained(str(job / "merged"))
    assert not getattr(merged.transformer, "peft_config", None)
    scaled = fresh()
    load_adapter(scaled, final, "s")
    use_adapter(scaled, "s", 0.5)
    at_half = _forward(scaled.transformer)
    assert (at_half - adapted).abs().max() > 1e-4  # the scale matters
    assert torch.allclose(_forward(merged.transformer), at_half, atol=1e-5)


def test_merge_job_fuses_a_finished_run(train_kit, tiny_model_dir):
    """`trainer/run.py merge` for a run trained without merged_scale; scale 1 equals the adapter as loaded."""
    from diffusers import AceStepPipeline

    from state.fsutil import write_json
    from trainer import run
    from trainer.listen.generate import load_adapter
    from trainer.model.load import load_pipeline

    job = train_kit.run_dir("to-merge", max_steps=4, learning_rate=1e-2, rank=4, alpha=8.0)
    assert train_kit.run(job) == 0 and not (job / "merged").exists()
    merge_job = train_kit.home / "jobs" / "merge-1"
    merge_job.mkdir(parents=True)
    write_json(merge_job / "params.json", {"run": job.name, "scale": 1.0})
    assert run.main(["merge", "--job-dir", str(merge_job)]) == 0
    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    load_adapter(pipe, job / "final", "a")
    merged = AceStepPipeline.from_pretrained(str(job / "merged"))
    assert torch.allclose(_forward(merged.transformer), _forward(pipe.transformer), atol=1e-5)
    write_json(merge_job / "params.json", {"run": "no-such-run"})
    assert run.main(["merge", "--job-dir", str(merge_job)]) == 1
    assert "has no finished adapter" in read_events(merge_job, "error")[-1]["message"]
