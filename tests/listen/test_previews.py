"""Training previews: rendered in the training process from the live transformer, reported as `sample` events."""
from __future__ import annotations

from pathlib import Path

import soundfile as sf
import torch
from safetensors.torch import load_file

from state import jobs
from state.events import read_all

from train_kit import end_of, read_events


def test_a_run_with_previews_gets_baseline_periodic_and_final_samples(train_kit):
    job = train_kit.run_dir("sampled", max_steps=5, sample_every=4, sample_seconds=1.0, sample_steps=2,
                            sample_prompt={"caption": "a test tone"})
    assert train_kit.run(job) == 0, read_events(job)[-3:]
    evs = read_all(job / "events.jsonl")
    samples = [e for e in evs if e["type"] == "sample"]
    assert [e["step"] for e in samples] == [0, 4, 5]  # the baseline, every 4 steps, and the last step
    assert evs[-1]["type"] == "end" and end_of(job)["status"] == "completed"
    assert jobs.status(job).status == "completed"
    for e in samples:
        wav = Path(e["path"])
        assert wav.name == f"step-{e['step']:06d}.wav" and wav.parent == job / "samples"
        info = sf.info(str(wav))
        assert info.samplerate == 48000 and info.channels == 2 and info.frames == 48000
    audio = [sf.read(str(job / "samples" / f"step-{s:06d}.wav"))[0] for s in (0, 5)]
    assert abs(audio[0]).max() > 0 and not (audio[0] == audio[1]).all()  # the adapter changed the render
    assert not (job / "samples" / "jobs").exists()  # no second process, no second copy of the model


def test_previews_do_not_change_what_is_trained(train_kit):
    runs = {}
    for name, every in (("with", 2), ("without", 0)):
        job = train_kit.run_dir(f"previews-{name}", max_steps=4, sample_every=every, sample_seconds=1.0,
                                sample_steps=2, sample_prompt={"caption": "a test tone"})
        assert train_kit.run(job) == 0, read_events(job, "error")
        runs[name] = load_file(str(job / "final" / "pytorch_lora_weights.safetensors"))
    assert runs["with"].keys() == runs["without"].keys()
    assert all(torch.equal(runs["with"][k], runs["without"][k]) for k in runs["with"])


def test_sample_now_renders_with_periodic_previews_off(train_kit, monkeypatch):
    from trainer.train import loop

    job = train_kit.run_dir("asked", max_steps=3, sample_every=0, sample_seconds=1.0, sample_steps=2)
    real, calls = loop.make_batch, []

    def batch_then_ask(*a, **k):  # the user clicks "Sample now" while step 2 trains
        calls.append(1)
        if len(calls) == 2:
            jobs.request(job, "sample_now")
        return real(*a, **k)

    monkeypatch.setattr(loop, "make_batch", batch_then_ask)
    assert train_kit.run(job) == 0, read_events(job, "error")
    assert [e["step"] for e in read_events(job, "sample")] == [2]


def test_denoise_equals_the_pipeline(tiny_pipe):
    """The in-process loop on pre-encoded conditioning gives the pipeline's own latents exactly."""
    from trainer.dataset.preprocess import context_latents, encode_conditioning
    from trainer.listen.generate import denoise, initial_noise

    pipe = tiny_pipe
    prompt = {"caption": "a warm pad", "lyrics": "[Instrumental]", "bpm": 90}
    noise = initial_noise(pipe, 7, 2.0)
    for guidance in (1.0, 7.0):
        ref = pipe(prompt=prompt["caption"], lyrics=prompt["lyrics"], bpm=90, audio_duration=2.0,
                   vocal_language="unknown", num_inference_steps=3, shift=3.0, guidance_scale=guidance,
                   latents=noise.clone(), output_type="latent").audios
        cond = encode_conditioning(pipe, prompt, 2.0)
        ehs = cond["encoder_hidden_states"][cond["encoder_attention_mask"]].unsqueeze(0)
        ctx = context_latents(pipe, noise.shape[1]).unsqueeze(0)
        null = pipe.condition_encoder.null_condition_emb
        ours = denoise(pipe.transformer, pipe.scheduler, ehs, ctx, noise.clone(), 3, 3.0, guidance, null)
        assert torch.equal(ours, ref), (guidance, (ours - ref).abs().max())
