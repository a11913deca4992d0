"""A/B generation on the tiny model: same noise, LoRA-only scaling, loudness-matched 48 kHz stereo WAVs."""
from __future__ import annotations

import json

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch

from state.events import read_all
from state.listen import ab
from trainer.listen.generate import AdapterLoadError, initial_noise, load_adapter, render, use_adapter

from ab_kit import CAPTION, prepare, run_job

PROMPT = {"caption": CAPTION, "duration": 2.0, "bpm": 120}


def _render(pipe, latents, name=None, scale=1.0):
    use_adapter(pipe, name, scale)
    return render(pipe, PROMPT, latents, steps=4, shift=3.0, guidance=7.0)


def test_scale_zero_is_the_base_exactly_and_other_scales_differ(tiny_pipe, ab_run):
    base_weights = {k: v.clone() for k, v in tiny_pipe.transformer.state_dict().items()}
    n = load_adapter(tiny_pipe, ab_run / "final", "final")
    assert n == 32  # 2 layers x 2 attentions x 4 projections x (A, B)
    latents = initial_noise(tiny_pipe, seed=7, seconds=2.0)
    base = _render(tiny_pipe, latents, None)
    zero = _render(tiny_pipe, latents, "final", 0.0)
    one = _render(tiny_pipe, latents, "final", 1.0)
    half = _render(tiny_pipe, latents, "final", 0.5)
    again = _render(tiny_pipe, latents, None)  # switching the adapter off again restores the base exactly
    assert base.shape == (2, 96000) and base.dtype == np.float32
    assert np.array_equal(base, zero) and np.abs(base - zero).max() == 0.0
    assert np.array_equal(base, again)
    assert np.abs(one - base).max() > 1e-3 and np.abs(half - base).max() > 1e-3 and np.abs(one - half).max() > 1e-4
    # scaling touched LoRA layers only: every base weight is unchanged
    after = tiny_pipe.transformer.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base_weights.items() if k in after)


def test_checkpoint_loads_with_its_alpha_like_final(tiny_pipe, ab_run):
    """final/ (diffusers loader, alpha from the file header) and checkpoints/step-000020 (our loader,
    alpha from the checkpoint's config) hold the same tensors, so they must sound identical; the
    earlier checkpoint must not."""
    load_adapter(tiny_pipe, ab_run / "final", "final")
    load_adapter(tiny_pipe, ab_run / "checkpoints" / "step-000020", "c20")
    load_adapter(tiny_pipe, ab_run / "checkpoints" / "step-000010", "c10")
    latents = initial_noise(tiny_pipe, seed=1, seconds=2.0)
    final = _render(tiny_pipe, latents, "final")
    assert np.array_equal(final, _render(tiny_pipe, latents, "c20"))
    assert not np.array_equal(final, _render(tiny_pipe, latents, "c10"))


def test_a_folder_without_an_adapter_is_refused(tiny_pipe, tmp_path):
    with pytest.raises(AdapterLoadError, match="holds no adapter"):
        load_adapter(tiny_pipe, tmp_path, "x")


def test_ab_job_writes_matched_48k_stereo_and_repeats_exactly(ab_run):
    first = prepare(ab_run, "ab-1", scales=[0, 1.0, 2.0])
    second = prepare(ab_run, "ab-2", scales=[0, 1.0, 2.0])
    assert run_job("ab", first) == 0, read_all(first / "events.jsonl")[-3:]
    assert run_job("ab", second) == 0
    meta = ab.read_meta(first)
    assert [o["key"] for o in meta["outputs"]] == ["base", "final@1", "final@2"]
    meter = pyloudnorm.Meter(48000)
    levels, clips = [], {}
    for o in meta["outputs"]:
        data, sr = sf.read(str(first / o["file"]), dtype="float32", always_2d=True)
        info = sf.info(str(first / o["file"]))
        assert sr == 48000 and data.shape == (96000, 2) and info.subtype == "PCM_24"
        assert np.abs(data).max() <= 10 ** (-1 / 20)  # peak-safe: under the -1 dBTP ceiling
        levels.append(meter.integrated_loudness(data.astype(np.float64)))
        clips[o["key"]] = data
        again, _ = sf.read(str(second / ab.output_path(second, o["key"]).name), dtype="float32", always_2d=True)
        assert np.array_equal(data, again), f"{o['key']}: the same request twice gave different audio"
    assert max(levels) - min(levels) < 0.5, levels
    assert meta["loudness"]["method"] == "lufs" and meta["loudness"]["spread_db"] < 0.5
    assert not np.array_equal(clips["base"], clips["final@1"]) and not np.array_equal(clips["final@1"], clips["final@2"])
    # blind letters cover every output once; the mapping is stored with the comparison
    assert sorted(meta["blind"]) == ["A", "B", "C"] and sorted(meta["blind"].values()) == sorted(clips)
    assert json.loads((first / "meta.json").read_text())["blind"] == meta["blind"]
    phases = [e for e in read_all(first / "events.jsonl") if e["type"] == "phase" and e["name"] == "generate"]
    assert phases and phases[-1]["done"] == phases[-1]["total"] == 12 and phases[-1]["eta_s"] == 0


def test_checkpoint_vs_checkpoint_job(ab_run):
    comp = prepare(ab_run, "ab-ck", mode="checkpoint-vs-checkpoint", scales=[1.0],
                   sources=[str(ab_run / "checkpoints" / "step-000010"), str(ab_run / "checkpoints" / "step-000020")])
    assert run_job("ab", comp) == 0, read_all(comp / "events.jsonl")[-3:]
    keys = [o["key"] for o in ab.read_meta(comp)["outputs"]]
    assert keys == ["step-000010@1", "step-000020@1"]
    a, b = (sf.read(str(comp / o["file"]))[0] for o in ab.read_meta(comp)["outputs"])
    assert not np.array_equal(a, b)
