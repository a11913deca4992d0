"""Synthetic audio and tiny models for the auto-label tests (tests/test_label_*.py).

Everything is built here, offline: a click track, a chord loop in a known key, a tiny random
Qwen3 causal LM whose tokenizer knows the audio-code tokens, and a tiny diffusers model folder
that carries an audio tokenizer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100


def click_track(path: Path, bpm: float = 120.0, seconds: float = 12.0, sr: int = SR) -> Path:
    """Short 2 kHz clicks with a decaying envelope, one per beat, a louder one on each downbeat."""
    y = np.zeros(int(seconds * sr), dtype=np.float32)
    n = int(0.03 * sr)
    t = np.arange(n) / sr
    click = (np.sin(2 * np.pi * 2000 * t) * np.exp(-t * 150)).astype(np.float32)
    for i, start in enumerate(np.arange(0, seconds, 60.0 / bpm)):
        s = int(start * sr)
        seg = y[s:s + n]
        seg += (0.9 if i % 4 == 0 else 0.5) * click[: len(seg)]
    sf.write(str(path), y, sr)
    return Path(path)


def _note(midi: int, t: np.ndarray) -> np.ndarray:
    f = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 5))  # 4 harmonics, like a real instrument


def chord_loop(path: Path, chords: list[list[int]], seconds_per_chord: float = 1.5, loops: int = 2,
               sr: int = SR) -> Path:
    """Sustained triads (MIDI note lists) with harmonics and a soft attack, looped; stereo file."""
    n = int(seconds_per_chord * sr)
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / 0.02) * np.exp(-t * 0.8)
    parts = []
    for _ in range(loops):
        for chord in chords:
            parts.append(env * sum(_note(m, t) for m in chord))
    y = np.concatenate(parts)
    y = (0.3 * y / np.max(np.abs(y))).astype(np.float32)
    sf.write(str(path), np.stack([y, y], axis=1), sr)
    return Path(path)


# i - iv - V - i in A minor: the G# of E major is what tells A minor from C major.
A_MINOR = [[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]]


# ---- tiny models --------------------------------------------------------------------------------

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TINY_LEVELS = [4, 4]  # a 16-code FSQ keeps the LM vocabulary small; the release has [8, 8, 8, 5, 5, 5]


def tiny_audio_tokenizer(levels=TINY_LEVELS, seed: int = 0):
    """A random AceStepAudioTokenizer sized for the tiny demo VAE (8-dim latents)."""
    import torch
    from diffusers.pipelines.ace_step import AceStepAudioTokenizer

    torch.manual_seed(seed)
    return AceStepAudioTokenizer(
        hidden_size=32, intermediate_size=64, audio_acoustic_hidden_dim=8, fsq_dim=32, fsq_input_levels=list(levels),
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
    ).eval()


def write_model_with_tokenizer(dest: Path, levels=TINY_LEVELS) -> Path:
    """The tiny pipeline plus an `audio_tokenizer` component, saved with save_pretrained."""
    from trainer.model.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.register_modules(audio_tokenizer=tiny_audio_tokenizer(levels))
    pipe.save_pretrained(str(dest), safe_serialization=True)
    return Path(dest)


def write_tiny_lm(dest: Path, codebook_size: int = 16, seed: int = 0) -> Path:
    """A random 2-layer Qwen3 causal LM whose tokenizer has ChatML, <think> and the audio-code tokens."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from trainer.model.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.add_tokens(["<think>", "</think>"] + [f"<|audio_code_{i}|>" for i in range(codebook_size)])
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    ))
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    return Path(dest)


def metre_piece(path: Path, bpm: float, beats_per_bar: int, subdivision: int = 2, seconds: float = 14.0,
                sr: int = SR) -> Path:
    """A pulse a musician would count: a bass note and a new chord on each downbeat (I-IV-V-I in C),
    softer chord strokes on the other beats, short ticks on each subdivision of the beat."""
    rng = np.random.default_rng(0)
    y = np.zeros(int(seconds * sr), dtype=np.float64)
    beat = 60.0 / bpm
    chords = [[48, 60, 64, 67], [53, 60, 65, 69], [55, 59, 62, 67], [48, 60, 64, 67]]

    def add(start: float, dur: float, tone: np.ndarray) -> None:
        s = int(start * sr)
        seg = y[s:s + len(tone)]
        seg += tone[: len(seg)]

    n_tone = int(min(beat, 0.6) * sr)
    t = np.arange(n_tone) / sr
    env = np.minimum(1.0, t / 0.005) * np.exp(-t * 6.0)
    tick_t = np.arange(int(0.02 * sr)) / sr
    tick = rng.standard_normal(len(tick_t)) * np.exp(-tick_t * 300.0)
    i = 0
    while i * beat < seconds:
        bar, pos = divmod(i, beats_per_bar)
        chord = chords[bar % len(chords)]
        tone = sum(_note(m, t) for m in chord[1:]) * env * (1.0 if pos == 0 else 0.45)
        if pos == 0:
            tone = tone + 1.6 * _note(chord[0] - 12, t) * env
        add(i * beat, beat, tone)
        for k in range(1, subdivision):
            add(i * beat + k * beat / subdivision, 0.02, 0.25 * tick)
        i += 1
    y = (0.3 * y / np.max(np.abs(y))).astype(np.float32)
    sf.write(str(path), y, sr)
    return Path(path)


def melody(path: Path, notes: list[int], seconds_per_note: float = 0.4, cents: float = 0.0, loops: int = 3,
           sr: int = SR) -> Path:
    """A single line (MIDI notes, one after another, each with harmonics and a short decay), played
    `loops` times and detuned by `cents` as a whole: a tune on one instrument, no chords under it."""
    n = int(seconds_per_note * sr)
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * 2.0)
    line = np.concatenate([env * _note(m + cents / 100.0, t) for m in notes] * loops)
    y = (0.3 * line / np.max(np.abs(line))).astype(np.float32)
    sf.write(str(path), y, sr)
    return Path(path)


# A tune in E minor on its own, the raised 7th (D#) at each cadence: E G B A G F# E D# E | B A G F# G E
E_MINOR_TUNE = [64, 67, 71, 69, 67, 66, 64, 63, 64, 71, 69, 67, 66, 67, 66, 64, 59, 64]
