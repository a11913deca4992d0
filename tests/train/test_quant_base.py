"""LoRA on an int8 frozen base (`base_quant: int8`, torchao weight-only): it trains on the tiny model in
this process, the base Linears hold quantised tensors while the adapter stays fp32, and final/ is the same
files, keys, shapes and dtypes as a plain LoRA's export, which diffusers loads unchanged."""
from __future__ import annotations

import json

import pytest
import torch

from state.train import preflight
from state.train.config import ConfigError, TrainConfig

from train_kit import adapter_tensors, end_of, read_events, structured_latents


def test_int8_base_trains_and_exports_like_a_plain_lora(train_kit, monkeypatch, tiny_pipe, tmp_path):
    from peft.tuners.lora.torchao import TorchaoLoraLinear

    from trainer.train import adapter, loop
    from trainer.train.export import export_final
    from trainer.train.quant import is_quantized

    seen = {}
    real_add_lora = loop.add_lora

    def spy(transformer, cfg):  # what peft is handed: the quantised base, before it is wrapped
        seen["before"] = {n: m.weight for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}
        seen["transformer"] = transformer
        return real_add_lora(transformer, cfg)

    monkeypatch.setattr(loop, "add_lora", spy)
    structured_latents(monkeypatch)
    settings = dict(max_steps=20, learning_rate=1e-2, rank=8, alpha=8.0, seed=1)
    job = train_kit.run_dir("int8", base_quant="int8", **settings)
    assert train_kit.run(job) == 0, read_events(job)[-3:]
    assert end_of(job)["status"] == "completed"

    # the loss falls
    curve = {e["step"]: e["loss"] for e in read_events(job, "step")}
    first, last = sum(curve[s] for s in range(1, 6)) / 5, sum(curve[s] for s in range(16, 21)) / 5
    assert last < 0.75 * first, (first, last)  # 6.05 -> 3.89 when written

    # every block Linear was quantised before peft saw it; the embedders were not; the adapter is fp32
    blocks = {n: w for n, w in seen["before"].items() if n.startswith("layers.")}
    assert len(blocks) == 22 and all(is_quantized(w) and w.qdata.dtype == torch.int8 for w in blocks.values())
    assert not any(is_quantized(w) for n, w in seen["before"].items() if not n.startswith("layers."))
    tr = seen["transformer"]
    assert isinstance(tr.layers[0].self_attn.to_q, TorchaoLoraLinear)
    assert is_quantized(tr.layers[1].cross_attn.to_out[0].base_layer.weight)
    lora = [p for n, p in tr.named_parameters() if adapter.is_adapter_param(n)]
    assert lora and all(p.dtype == torch.float32 and p.requires_grad for p in lora)
    start = read_events(job, "start")[0]
    assert start["config"]["base_quant"] == "int8" and start["base_weights_mb"] > 0

    # final/ is a plain LoRA's export: the same adapter built on the unquantised tiny model, exported alike
    cfg = TrainConfig.load(job / "config.json").replace(base_quant="none")
    plain = tiny_pipe.transformer
    adapter.add_lora(plain, cfg)
    plain_final = export_final(tmp_path / "plain", plain, cfg, 20, 3)
    final = job / "final"
    for name in ("pytorch_lora_weights.safetensors", "adapter_model.safetensors"):
        ours, theirs = adapter_tensors(final / name), adapter_tensors(plain_final / name)
        assert {k: (v.shape, v.dtype) for k, v in ours.items()} == {k: (v.shape, v.dtype) for k, v in theirs.items()}
    assert json.loads((final / "adapter_config.json").read_text()) == \
        json.loads((plain_final / "adapter_config.json").read_text())

    # and diffusers loads it into a full-precision pipeline unchanged
    plain.delete_adapters("default")
    tiny_pipe.load_lora_weights(str(final), adapter_name="int8run")
    loaded = {n: p for n, p in tiny_pipe.transformer.named_parameters() if "lora_" in n}
    assert len(loaded) == len(adapter_tensors(final / "pytorch_lora_weights.safetensors"))


def test_unsupported_device_is_refused_before_loading(train_kit, monkeypatch):
    monkeypatch.setitem(preflight.BASE_QUANT_SUPPORT, "int8", ("torchao", ("cuda",)))
    job = train_kit.run_dir("int8-cpu", base_quant="int8", max_steps=2)
    assert train_kit.run(job) != 0
    assert "runs on CUDA only, not on CPU" in read_events(job, "error")[-1]["message"]
    assert not read_events(job, "phase")  # nothing was loaded


def test_config_and_preflight_name_the_quantised_base():
    assert TrainConfig().base_quant == "none"
    with pytest.raises(ConfigError, match=r"base_quant must be one of \['none', 'int8'\].*'int4'"):
        TrainConfig.from_dict({"base_quant": "int4"})
    assert preflight.base_quant_problem("int8", "cpu") is None
    assert "not on MPS" in preflight.base_quant_problem("int8", "mps")
    assert preflight.base_quant_checks({"base_quant": "none"}, "mps") == []
    [err] = preflight.base_quant_checks({"base_quant": "int8"}, "mps")
    assert err.level == "error"
    levels = [c.level for c in preflight.base_quant_checks({"base_quant": "int8", "gradient_checkpointing": False},
                                                           "cuda")]
    assert levels == ["info", "warning"]


def test_estimate_counts_int8_weights(tiny_pipe):
    """The fake-tensor step quantises as training does: the weights' bytes drop, the step still runs."""
    from state.train import estimates, shapes
    from trainer.train.fake_step import StepRig
    from trainer.train.quant import is_quantized

    # the tiny DiT widened, so its weights are large beside the allocator's 512-byte rounding
    dit = {**shapes.normalized(dict(tiny_pipe.transformer.config)), "hidden_size": 256, "intermediate_size": 512}
    weights = {}
    for q in ("none", "int8"):
        s = estimates.settings_for({"base_quant": q, "rank": 4}, dtype="bf16", seconds=2.0)
        assert s["base_quant"] == q
        rig = StepRig(dit, s)
        weights[q] = rig.meter.by_label["weights"]  # bytes (the MB breakdown rounds this model to 0)
        assert is_quantized(rig.transformer.layers[0].mlp.down_proj.weight) == (q == "int8")
    assert rig.measure(s["frames"], 1, True, 16)["peak_allocated_mb"] > 0  # the int8 step runs on fake tensors
    # int8 saves about half of the blocks' bf16 Linear bytes (less their per-row scales)
    blocks_bf16 = 2 * sum(m.weight.numel() for n, m in rig.transformer.named_modules()
                          if n.startswith("layers.") and isinstance(m, torch.nn.Linear) and "lora_" not in n)
    assert 0.4 * blocks_bf16 < weights["none"] - weights["int8"] <= 0.5 * blocks_bf16, (weights, blocks_bf16)
