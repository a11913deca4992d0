"""A tiny ACE-Step pipeline with random weights, built in code from the real classes.

It lets tests, the benchmark and a first-time user exercise the whole tool (preprocess, train,
sample, export) on a CPU in seconds and without the network. It produces noise, not music.

Shapes stay consistent the way the release's are (ACESTEP.md §1): the VAE hop is 1920 samples
(25 latents/s at 48 kHz), `encoder_hidden_size = 2 * decoder_input_channels`, the DiT's
`in_channels = 3 * audio_acoustic_hidden_dim`, the condition encoder's `text_hidden_dim` equals the
text encoder's hidden size. The acoustic dim is 8 rather than 64: the VAE's first convolutions run
at the audio rate with `2 * dim` channels, and 64 makes a 10 s encode take ~14 s on a CPU.

CLI: `python -m trainer.model.tiny [--dest DIR]`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DEMO_MARKER = "acelora_demo.json"
ACOUSTIC_DIM = 8
SAMPLE_RATE = 48000
DOWNSAMPLING = [2, 4, 4, 6, 10]  # product 1920: 25 latent frames per second at 48 kHz
SILENCE_FRAMES = 15000  # the condition encoder's default buffer length (600 s), so from_pretrained loads it

_TOKENIZER_CORPUS = [
    "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n# Caption\n",
    "# Metas\n- bpm: 120\n- timesignature: 4\n- keyscale: C major\n- duration: 30 seconds\n",
    "# Languages\nen\n\n# Lyric\n[Verse]\nhello world [Chorus] la la la [Instrumental]",
    "upbeat pop song with piano, drums, bass, synth, guitar, female vocals, calm ambient",
    "0123456789 N/A major minor # b : - . , ' ! ?",
]


def build_tokenizer():
    """Byte-level BPE trained on a few strings: every input encodes, nothing is downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TOKENIZER_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=4096
    )


def build_tiny_pipeline(seed: int = 0):
    """An AceStepPipeline with tiny random components; deterministic for a given seed."""
    import torch
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_hidden = 32
    text_encoder = Qwen3Model(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=text_hidden, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )).eval()
    vae = AutoencoderOobleck(
        encoder_hidden_size=2 * ACOUSTIC_DIM, downsampling_ratios=DOWNSAMPLING, channel_multiples=[1, 1, 1, 1, 1],
        decoder_channels=2 * ACOUSTIC_DIM, decoder_input_channels=ACOUSTIC_DIM, audio_channels=2,
        sampling_rate=SAMPLE_RATE,
    ).eval()
    attn = dict(num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8)
    transformer = AceStepTransformer1DModel(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, in_channels=3 * ACOUSTIC_DIM,
        audio_acoustic_hidden_dim=ACOUSTIC_DIM, patch_size=2, is_turbo=False, model_version="base", **attn,
    ).eval()
    condition_encoder = AceStepConditionEncoder(
        hidden_size=32, intermediate_size=64, text_hidden_dim=text_hidden, timbre_hidden_dim=ACOUSTIC_DIM,
        num_lyric_encoder_hidden_layers=1, num_timbre_encoder_hidden_layers=1, **attn,
    ).eval()
    condition_encoder.silence_latent.copy_(_encoded_silence(vae))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    return AceStepPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
        condition_encoder=condition_encoder, scheduler=scheduler,
    )


def build_release_size_pipeline(device: str = "cpu", dtype=None):
    """An AceStepPipeline at the 2B release's real dimensions with random weights (bench/gpu_check.py).

    DiT and condition encoder are diffusers' defaults, which are the release's 2B config (ACESTEP.md §3);
    the text encoder is Qwen3-Embedding-0.6B's shape (1024 wide, 28 layers) with this file's small
    vocabulary (the tokenizer is built offline); the VAE is 48 kHz with hop 1920 and 64 latent channels.
    Modules are created on `device`, so random init runs there (seconds on a GPU, not minutes on a CPU).
    """
    import torch
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = build_tokenizer()
    with torch.device(device):
        text_encoder = Qwen3Model(Qwen3Config(
            vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
            num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)).eval()
        vae = AutoencoderOobleck(encoder_hidden_size=128, downsampling_ratios=DOWNSAMPLING,
                                 channel_multiples=[1, 2, 4, 8, 16], decoder_channels=128, decoder_input_channels=64,
                                 audio_channels=2, sampling_rate=SAMPLE_RATE).eval()
        transformer = AceStepTransformer1DModel(is_turbo=False, model_version="base").eval()
        condition_encoder = AceStepConditionEncoder().eval()
    pipe = AceStepPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                           condition_encoder=condition_encoder,
                           scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0))
    if dtype is not None:
        pipe.to(dtype=dtype)
    return pipe


def _encoded_silence(vae):
    """What the release's silence latent is: VAE-encoded digital silence, tiled to the buffer length.

    Zeros would be out of distribution for the timbre encoder; 10 s encoded once and tiled is
    what a stationary input gives anyway, at a fraction of the cost of 600 s.
    """
    import torch

    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 2, 10 * SAMPLE_RATE)).latent_dist.mean  # (1, dim, 250)
    z = z.transpose(1, 2)  # (1, 250, dim)
    reps = math.ceil(SILENCE_FRAMES / z.shape[1])
    return z.repeat(1, reps, 1)[:, :SILENCE_FRAMES, :]


def is_demo_model(model_dir: Path) -> bool:
    return (Path(model_dir) / DEMO_MARKER).is_file()


def write_demo_model(dest: Path | None = None, seed: int = 0) -> Path:
    """save_pretrained the tiny pipeline into `dest`, atomically (built in a temp dir, then renamed)."""
    from state import paths
    from state.fsutil import staged_dir, write_json

    dest = Path(dest) if dest is not None else paths.demo_model_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(seed)
    with staged_dir(dest) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / DEMO_MARKER, {
            "demo": True,
            "weights": "random",
            "note": "Random-weights demo model: it produces noise, not music. "
                    "Use it to try the workflow; train real adapters on a released ACE-Step model.",
            "seed": seed,
            "acoustic_dim": ACOUSTIC_DIM,
        })
    return dest


def ensure_demo_model(dest: Path | None = None) -> Path:
    from state import paths

    dest = Path(dest) if dest is not None else paths.demo_model_dir()
    if is_demo_model(dest) and (dest / "model_index.json").is_file():
        return dest
    return write_demo_model(dest)


def job_build_demo(ctx, args) -> str:
    """Job kind "demo-model": params may give `dest`; the default is the workspace demo folder."""
    from state import paths

    dest = Path(ctx.params.get("dest") or paths.demo_model_dir())
    ctx.phase("load", 0, 1)
    out = write_demo_model(dest, seed=int(ctx.params.get("seed", 0)))
    ctx.phase("load", 1, 1)
    ctx.emit("model", model_dir=str(out), demo=True, note="random weights: produces noise, not music")
    return "completed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.model.tiny", description="Write the tiny random-weights demo model.")
    ap.add_argument("--dest", type=Path, default=None, help="folder to write (default: <workspace>/models/acelora-tiny-demo)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = write_demo_model(args.dest, seed=args.seed)
    print(json.dumps({"model_dir": str(out), "demo": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
