"""Synthetic audio and odd files for tests: what a careless export or a broken copy produces."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf


def sine(path: Path, seconds: float = 12.0, sr: int = 44100, channels: int = 1, freq: float = 440.0,
         amp: float = 0.3, subtype: str | None = None) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    mono = amp * np.sin(2 * np.pi * freq * t)
    data = mono if channels == 1 else np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1)
    sf.write(str(path), data.astype(np.float32), sr, subtype=subtype)
    return Path(path)


def wav_header_only(path: Path, channels: int = 2, sr: int = 48000, frames: int = 0) -> Path:
    """A syntactically valid PCM16 WAV header claiming `channels` and `frames` (data may be absent)."""
    block = max(channels, 1) * 2
    data_len = frames * block
    hdr = b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * block, block, 16)
    hdr += b"data" + struct.pack("<I", data_len)
    Path(path).write_bytes(hdr)
    return Path(path)
