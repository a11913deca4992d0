"""Decoding what libsndfile cannot: m4a (AAC, ALAC), wma, webm/opus, mka, through PyAV.

PyAV rather than the ffmpeg program: its wheel carries its own FFmpeg libraries (AAC, ALAC, WMA,
Opus, Vorbis and MP3 decoders among them), so `pip install -r requirements.txt` is all a laptop, a
Space image or CI needs, with no binary to find on PATH and no subprocess per file. It reads from an
open file object, so the probe decodes through the one descriptor it hashed, and it streams frames,
so a limit of N seconds decodes about N seconds. FFmpeg applies the container's edit list, so an
iTunes m4a starts where its WAV source did (the AAC encoder's priming samples are dropped).

soundfile stays the first decoder everywhere: it reads the formats it knows exactly (frame counts
from the header) and its failures on them are more specific. This module only takes the files whose
extension libsndfile does not decode on this machine (`needs_fallback`). Stdlib, numpy and PyAV only:
the dashboard imports it.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

# containers users bring from phones, iTunes, Windows and browsers; decoded by FFmpeg
FALLBACK_EXTENSIONS = (".m4a", ".m4b", ".mp4", ".aac", ".wma", ".asf", ".webm", ".weba", ".mka", ".mp3")
BLOCK_FRAMES = 1 << 18  # samples per channel handed out at a time, as the soundfile path does


class DecodeError(ValueError):
    """FFmpeg could not decode the file; the message says why in a user's words."""


def available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def needs_fallback(path: str | Path, native: set[str] | tuple[str, ...]) -> bool:
    """Whether a file with this name is one FFmpeg decodes and libsndfile (whose extensions are `native`) does not."""
    ext = Path(path).suffix.lower()
    return ext in FALLBACK_EXTENSIONS and ext not in native and available()


class Reader:
    """An open audio stream: rate, channels, codec, the container's duration, and float32 blocks.

    `source` is a path or a binary file object positioned at the file's start.
    """

    def __init__(self, source: str | Path | IO[bytes]):
        import av

        try:
            self._container = av.open(str(source) if isinstance(source, (str, Path)) else source, mode="r")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise DecodeError(_words(exc)) from None
        audio = self._container.streams.audio
        if not audio:
            self._container.close()
            raise DecodeError("no audio stream was found in it")
        self._stream = audio[0]
        ctx = self._stream.codec_context
        self.codec = ctx.name
        self.sample_rate = int(self._stream.rate or ctx.sample_rate or 0)
        self.channels = int(ctx.channels or 0)
        self.seconds = _declared_seconds(self._container, self._stream)
        if self.sample_rate <= 0 or self.channels <= 0:
            self._container.close()
            raise DecodeError(f"its {self.codec} stream declares no sample rate or channels")

    def blocks(self, max_frames: int | None = None) -> Iterator[np.ndarray]:
        """(n, channels) float32 blocks, at most `max_frames` frames in all; raises DecodeError mid-stream."""
        import av

        # one planar float layout for every codec; the rate stays the file's own
        resampler = av.AudioResampler(format="fltp", layout=self._stream.layout.name, rate=self.sample_rate)
        pending, held, left = [], 0, max_frames if max_frames is not None else -1
        try:
            for frame in self._container.decode(self._stream):
                for out in resampler.resample(frame):
                    x = out.to_ndarray()[: self.channels].T  # (n, channels)
                    if left >= 0:
                        x = x[:left]
                        left -= len(x)
                    pending.append(x)
                    held += len(x)
                if held >= BLOCK_FRAMES:
                    yield np.ascontiguousarray(np.concatenate(pending), dtype=np.float32)
                    pending, held = [], 0
                if left == 0:
                    break
            else:
                for out in resampler.resample(None):
                    x = out.to_ndarray()[: self.channels].T
                    pending.append(x[:left] if left >= 0 else x)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise DecodeError(_words(exc)) from None
        if pending:
            yield np.ascontiguousarray(np.concatenate(pending), dtype=np.float32)

    def read(self, max_frames: int | None = None) -> np.ndarray:
        parts = list(self.blocks(max_frames))
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def preview_mp3(path: str | Path, max_seconds: float = 600.0) -> bytes:
    """The first `max_seconds` as MP3 (192 kbit/s), for a browser that cannot play the file itself
    (no browser plays WMA; ALAC and Opus depend on the browser)."""
    import av

    with Reader(path) as r:
        x = r.read(int(max_seconds * r.sample_rate))  # (n, channels)
        rate = r.sample_rate
    x = x[:, :2] if x.shape[1] >= 2 else np.repeat(x, 2, axis=1)
    if rate not in (32000, 44100, 48000):  # what MP3 allows at full bandwidth
        import soxr

        x, rate = soxr.resample(x, rate, 48000).astype(np.float32), 48000
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="stereo")
        stream.bit_rate = 192_000
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base: microseconds
    return None


def _words(exc: Exception) -> str:
    """FFmpeg's message without its call syntax ("[Errno 1094995529] Invalid data found ...: '<path>'")."""
    text = str(getattr(exc, "strerror", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "invalid data" in low:
        return "FFmpeg found no audio it can read in it: it is damaged, cut short, or not audio"
    if "end of file" in low:
        return "FFmpeg reached the end of the file before any audio: it is cut short"
    return f"FFmpeg: {text[:160]}"
