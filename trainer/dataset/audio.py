"""Audio in: decode any file soundfile or PyAV reads into 48 kHz stereo float32, the VAE's input.

Everything here uses real libraries: soundfile (libsndfile) decodes, PyAV's FFmpeg what libsndfile
cannot (m4a, wma, webm: state.dataset.decode), soxr resamples.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TARGET_SR = 48000


class AudioDecodeError(ValueError):
    """A file that could not be decoded; the message names the file and what to do."""


@dataclass
class LoadedAudio:
    samples: np.ndarray          # (2, n) float32 at `sample_rate`
    sample_rate: int             # always TARGET_SR after load_audio
    source_rate: int             # the file's own rate
    source_channels: int
    seconds: float               # duration of `samples` (after any max_seconds cut)
    source_seconds: float        # duration of the whole file
    notes: list[str] = field(default_factory=list)  # human sentences: cut, downmix, NaN repair, clipping


def load_audio(path: str | Path, max_seconds: float | None = None, target_sr: int = TARGET_SR) -> LoadedAudio:
    """Decode, fix channels, resample to `target_sr`, repair NaN/Inf, keep peaks within [-1, 1].

    Only the first `max_seconds` are decoded when a limit is given, so a long file costs no
    more memory than the limit.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"Audio file not found: {path}")
    data, sr, total = _decode(path, max_seconds)
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path} holds no audio samples.")

    notes: list[str] = []
    source_seconds = total / sr
    frames = data.shape[0]
    if frames < total:
        notes.append(f"Only the first {frames / sr:.1f} s of {source_seconds:.1f} s were used "
                     f"(limit {max_seconds:g} s).")
    x = _repair_non_finite(data.T, path, notes)  # (channels, n)
    x = _to_stereo(x, notes)
    if sr != target_sr:
        x = resample(x, sr, target_sr)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        # Resampling can overshoot a full-scale input slightly; hard clipping only then.
        np.clip(x, -1.0, 1.0, out=x)
        notes.append(f"Peaks up to {peak:.3f} after resampling were clipped to 1.0.")
    x = np.ascontiguousarray(x, dtype=np.float32)
    return LoadedAudio(samples=x, sample_rate=target_sr, source_rate=sr, source_channels=data.shape[1],
                       seconds=x.shape[1] / target_sr, source_seconds=source_seconds, notes=notes)


def _decode(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int, int]:
    """(samples (n, channels) float32, rate, the whole file's frames), through soundfile or, for what
    libsndfile cannot read, PyAV; a failure names the file and what to do."""
    import soundfile as sf

    from state.dataset import decode
    from state.dataset.probe import native_extensions

    limit = max_seconds if max_seconds is not None and max_seconds > 0 else None
    if decode.needs_fallback(path, native_extensions()):
        try:
            with decode.Reader(path) as r:
                cap = None if limit is None else int(round(limit * r.sample_rate))
                data = r.read(cap)
                # a cut file's length is the container's claim; an uncut one's is what was decoded
                cut = cap is not None and len(data) >= cap and r.seconds
                return data, r.sample_rate, max(len(data), round(r.seconds * r.sample_rate)) if cut else len(data)
        except decode.DecodeError as exc:
            raise AudioDecodeError(f"Could not decode {path} ({exc}). Re-export it as WAV or FLAC and add it "
                                   "again.") from exc
    try:
        info = sf.info(str(path))
        frames = info.frames if limit is None else min(info.frames, int(round(limit * info.samplerate)))
        data, sr = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioDecodeError(
            f"Could not decode {path}: {exc}. Convert it to WAV, FLAC or OGG (or MP3 with a recent "
            "libsndfile) and add it again.") from exc
    return data, sr, info.frames


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """(channels, n) float32 -> (channels, m) with soxr's high-quality filter."""
    import soxr

    y = soxr.resample(np.ascontiguousarray(x.T), sr_in, sr_out, quality="HQ")  # soxr wants (n, channels)
    return np.ascontiguousarray(y.T, dtype=np.float32)


def _repair_non_finite(x: np.ndarray, path: Path, notes: list[str]) -> np.ndarray:
    bad = ~np.isfinite(x)
    if bad.any():
        x = np.where(bad, 0.0, x).astype(np.float32)
        notes.append(f"{int(bad.sum())} NaN/Inf samples in {path.name} were replaced with silence.")
    return x


def _to_stereo(x: np.ndarray, notes: list[str]) -> np.ndarray:
    """The VAE takes exactly 2 channels: duplicate mono, average anything wider."""
    if x.shape[0] == 2:
        return x
    if x.shape[0] == 1:
        return np.repeat(x, 2, axis=0)
    # No layout metadata survives soundfile, so a plain mean is the only safe downmix.
    notes.append(f"{x.shape[0]} channels were downmixed to stereo.")
    mono = x.mean(axis=0, keepdims=True)
    return np.repeat(mono, 2, axis=0)
