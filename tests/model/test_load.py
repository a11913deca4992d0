"""trainer.model.tiny, trainer.model.load and state.model.catalog: building, saving, loading, device choice."""
from __future__ import annotations

import json

import pytest
import torch

from state.model import catalog as cat


def test_demo_model_is_marked_and_loads(tiny_model_dir):
    from trainer.model.load import load_pipeline
    from trainer.model.tiny import DEMO_MARKER, is_demo_model

    marker = json.loads((tiny_model_dir / DEMO_MARKER).read_text())
    assert marker["demo"] is True and "noise, not music" in marker["note"]
    assert is_demo_model(tiny_model_dir)
    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    assert pipe.latents_per_second == 25.0 and pipe.sample_rate == 48000
    names = {n for n, _ in pipe.transformer.named_modules()}
    for layer in (0, 1):
        for block in ("self_attn", "cross_attn"):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                assert f"layers.{layer}.{block}.{proj}" in names
    assert pipe.tokenizer.pad_token == pipe.tokenizer.eos_token == "<|endoftext|>"
    cfg = pipe.transformer.config
    assert cfg.in_channels == 3 * cfg.audio_acoustic_hidden_dim
    assert pipe.vae.config.encoder_hidden_size == 2 * pipe.vae.config.decoder_input_channels
    assert pipe.condition_encoder.config.text_hidden_dim == pipe.text_encoder.config.hidden_size


def test_saved_model_matches_built_model_and_generates(tiny_model_dir):
    from trainer.model.load import load_pipeline
    from trainer.model.tiny import build_tiny_pipeline

    built = build_tiny_pipeline(seed=0)
    loaded = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    for a, b in ((built.transformer, loaded.transformer), (built.condition_encoder, loaded.condition_encoder)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    out = loaded(prompt="test", lyrics="[Instrumental]", audio_duration=1.0, num_inference_steps=2,
                 guidance_scale=7.0, generator=torch.Generator().manual_seed(0)).audios
    assert out.shape == (1, 2, 48000) and torch.isfinite(out).all()


def test_ensure_demo_model_builds_once(workspace):
    from state import paths
    from trainer.model.load import resolve_model_dir

    first = resolve_model_dir(cat.DEMO_MODEL_ID)
    assert first == str(paths.demo_model_dir())
    mtime = (paths.demo_model_dir() / "model_index.json").stat().st_mtime_ns
    assert resolve_model_dir(cat.DEMO_MODEL_ID) == first
    assert (paths.demo_model_dir() / "model_index.json").stat().st_mtime_ns == mtime


def test_hub_id_resolves_to_downloaded_folder(workspace, tiny_model_dir):
    import shutil

    from state import paths
    from trainer.model.load import resolve_model_dir

    repo = "ACE-Step/acestep-v15-xl-base-diffusers"
    assert resolve_model_dir(repo) == repo  # not downloaded: left to from_pretrained
    local = paths.models_dir() / "ACE-Step--acestep-v15-xl-base-diffusers"
    shutil.copytree(tiny_model_dir, local)
    assert resolve_model_dir(repo) == str(local)


def test_folder_without_model_index_is_explained(tmp_path):
    from trainer.model.load import resolve_model_dir

    with pytest.raises(FileNotFoundError, match="model_index.json"):
        resolve_model_dir(tmp_path)


def test_pick_device_dtype_on_cpu(monkeypatch):
    from trainer.model import load as models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "_mps_available", lambda: False)
    assert models.pick_device_dtype() == (torch.device("cpu"), torch.float32)
    assert models.pick_device_dtype("cpu:bf16") == (torch.device("cpu"), torch.bfloat16)
    assert models.pick_device_dtype("fp32") == (torch.device("cpu"), torch.float32)
    with pytest.raises(RuntimeError, match="CUDA"):
        models.pick_device_dtype("cuda")
    with pytest.raises(ValueError, match="Unknown device"):
        models.pick_device_dtype("tpu")
    # explicit fp16 on the CPU is the fp16 + loss-scaling path of T4/V100, runnable here for tests
    assert models.pick_device_dtype("cpu:fp16") == (torch.device("cpu"), torch.float16)


def test_pick_device_dtype_prefers_cuda_bf16(monkeypatch):
    from trainer.model import load as models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.pick_device_dtype() == (torch.device("cuda"), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert models.pick_device_dtype()[1] == torch.float16
    assert models.pick_device_dtype("cuda:1:fp32") == (torch.device("cuda:1"), torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "_mps_available", lambda: True)
    assert models.pick_device_dtype() == (torch.device("mps"), torch.float32)


def test_describe_device_cpu():
    from trainer.model.load import describe_device

    d = describe_device("cpu")
    assert d["type"] == "cpu" and d["torch"] == torch.__version__ and d["total_memory_mb"] > 0


def test_catalog_variants_and_defaults(tiny_model_dir):
    assert cat.variant_of("ACE-Step/acestep-v15-xl-turbo-diffusers") == "turbo"
    assert cat.variant_of("Runware/acestep-v15-base-diffusers") == "base"
    assert cat.variant_of("someone/acestep-v15-sft-diffusers") == "sft"
    assert cat.variant_of(str(tiny_model_dir)) == "base"  # from transformer/config.json model_version
    turbo = cat.info_for("ACE-Step/acestep-v15-xl-turbo-diffusers")
    assert (turbo.steps, turbo.shift, turbo.guidance, turbo.size) == (8, 3.0, 1.0, "XL")
    base = cat.info_for("Runware/acestep-v15-base-diffusers")
    assert (base.steps, base.shift, base.guidance, base.size) == (50, 3.0, 7.0, "2B")
    assert cat.local_dir_name("ACE-Step/x") == "ACE-Step--x"


def test_catalog_is_torch_free():
    import subprocess
    import sys

    code = "import sys, state.model.catalog; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_demo_job_and_cli(workspace, tmp_path):
    from state import paths
    from state.events import EventWriter, read_all
    from trainer.job import JobContext
    from trainer.model import tiny

    ctx = JobContext(tmp_path / "job", EventWriter(tmp_path / "job"), {})
    assert tiny.job_build_demo(ctx, None) == "completed"
    assert tiny.is_demo_model(paths.demo_model_dir())
    assert any(e["type"] == "model" and e["demo"] for e in read_all(ctx.events.path))
    assert tiny.main(["--dest", str(tmp_path / "cli")]) == 0 and tiny.is_demo_model(tmp_path / "cli")
