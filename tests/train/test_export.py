"""final/: both adapter formats load into a fresh pipeline, change its output, and agree with each other."""
from __future__ import annotations

import json

import torch
from huggingface_hub import ModelCard

from train_kit import adapter_tensors, end_of


def _generate(pipe, seed=7):
    out = pipe(prompt="a pure tone at 330 Hz", lyrics="[Instrumental]", audio_duration=2.0, num_inference_steps=4,
               guidance_scale=7.0, shift=3.0, generator=torch.Generator().manual_seed(seed), output_type="latent")
    return out.audios


def test_both_formats_load_change_the_output_and_agree(train_kit, tiny_model_dir):
    from trainer.model.load import load_pipeline

    # alpha != rank: a loader that ignored alpha would scale the adapter wrongly and the formats would differ
    job = train_kit.run_dir("export", max_steps=15, learning_rate=1e-2, rank=4, alpha=8.0,
                            target_modules=["to_q", "to_k", "to_v", "to_out.0", "gate_proj"])
    assert train_kit.run(job) == 0 and end_of(job)["status"] == "completed"
    final = job / "final"

    peft_keys = set(adapter_tensors(final / "adapter_model.safetensors"))
    assert "base_model.model.layers.0.self_attn.q_proj.lora_A.weight" in peft_keys
    assert "base_model.model.layers.1.cross_attn.o_proj.lora_B.weight" in peft_keys
    assert "base_model.model.layers.1.mlp.gate_proj.lora_B.weight" in peft_keys
    assert not any("to_q" in k or "to_out" in k for k in peft_keys)
    acfg = json.loads((final / "adapter_config.json").read_text())
    assert acfg["r"] == 4 and acfg["lora_alpha"] == 8.0 and acfg["peft_type"] == "LORA"
    assert sorted(acfg["target_modules"]) == ["gate_proj", "k_proj", "o_proj", "q_proj", "v_proj"]
    meta = json.loads((final / "training_meta.json").read_text())
    assert meta["base_model_id"] == str(tiny_model_dir) and meta["variant"] == "base" and meta["shift"] == 3.0
    assert meta["recommended_steps"] == 50 and meta["recommended_guidance"] == 7.0 and meta["steps"] == 15
    assert meta["rank"] == 4 and meta["alpha"] == 8.0 and meta["dataset_size"] == 3
    card = ModelCard.load(final / "README.md")
    assert "load_lora_weights" in card.text and card.data.library_name == "diffusers"
    assert card.data.pipeline_tag == "text-to-audio" and "lora" in card.data.tags

    base = _generate(load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32))
    pipe_d = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    pipe_d.load_lora_weights(str(final), adapter_name="d")
    out_d = _generate(pipe_d)
    pipe_o = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    pipe_o.load_lora_weights(str(final), weight_name="adapter_model.safetensors", adapter_name="o")
    out_o = _generate(pipe_o)

    assert (out_d - base).abs().max() > 1e-3  # the adapter does something
    assert torch.equal(out_d, _generate(pipe_d))  # and nothing random (exported lora_dropout is 0)
    assert torch.allclose(out_d, out_o, atol=1e-6)  # diffusers converts the original format to the same adapter
    # and loading reproduces the adapter exactly as trained
    trained = adapter_tensors(final / "pytorch_lora_weights.safetensors")
    loaded = {"transformer." + k.replace(".o.weight", ".weight"): v
              for k, v in pipe_o.transformer.state_dict().items() if "lora_" in k}
    assert set(loaded) == set(trained)
    assert all(torch.equal(loaded[k], trained[k]) for k in loaded)
