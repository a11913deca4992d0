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


def encoded(path: Path, samples: np.ndarray, sr: int, codec: str, bit_rate: int = 192_000) -> Path:
    """`samples` ((channels, n) float in [-1, 1]) encoded by PyAV's own FFmpeg: codec "aac" or "alac" for
    .m4a, "wmav2" for .wma, "libopus" for .webm; the container follows the file's extension."""
    from fractions import Fraction

    import av

    layout = "stereo" if samples.shape[0] == 2 else "mono"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        stream.bit_rate = bit_rate
        fmt = stream.codec_context.format
        x = samples if fmt.is_planar else samples.T.reshape(1, -1)
        if fmt.name.startswith("s16"):
            x = np.round(x * 32767).astype(np.int16)
        elif fmt.name.startswith("s32"):
            x = np.round(x * (2**31 - 1)).astype(np.int32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x, dtype=x.dtype if x.dtype != np.float64 else np.float32),
                                           format=fmt.name, layout=layout)
        # pts 0: the encoder's priming samples get negative times, which the muxer turns into an edit list
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return Path(path)
