"""Probe an audio file without torch: can it be decoded, how long, what rate, silent, clipped?

soundfile and numpy, plus PyAV (state.dataset.decode) for what libsndfile cannot read (m4a, wma, webm). Statistics stream over blocks and stop after `analyse_s` seconds
(the part training can use), so a 2-hour file costs the same as a 10-minute one.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import soundfile as sf

from state.dataset import decode
from state.fsutil import file_sha256, open_regular, why_unreadable

MODEL_RATE = 48000
RATE_RANGE = (8000, 768000)  # outside this a header is damaged or the file is not music
MAX_CHANNELS = 64
# bytes per sample of the uncompressed subtypes, to check a header's claim against the file size
_PCM_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
              "ULAW": 1, "ALAW": 1}
_COMPRESSED = ("FLAC", "OGG", "MPEG")  # containers whose subtype names the decoded samples, not the bytes
MAX_TRAIN_S = 600.0
SILENT_PEAK = 10 ** (-70 / 20)  # quieter than -70 dBFS everywhere: nothing to learn from
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.001  # more than 0.1% of samples at full scale sounds distorted


_COMMON = (".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc",
           ".caf", ".w64", ".rf64", ".au")
_NEEDS = {".mp3": "MP3", ".aif": "AIFF", ".aiff": "AIFF", ".aifc": "AIFF", ".caf": "CAF",
          ".w64": "W64", ".rf64": "RF64", ".au": "AU"}


def native_extensions() -> tuple[str, ...]:
    """Music formats this machine's libsndfile decodes (mp3 only where it was built in)."""
    have = set(sf.available_formats())
    return tuple(e for e in _COMMON if _NEEDS.get(e, "WAV") in have)


def audio_extensions() -> tuple[str, ...]:
    """Every music format a dataset takes: libsndfile's, then what PyAV's FFmpeg adds (m4a, wma, webm, ...)."""
    native = native_extensions()
    extra = tuple(e for e in decode.FALLBACK_EXTENSIONS if e not in native) if decode.available() else ()
    return native + extra


@dataclass
class Probe:
    ok: bool  # decodable with at least one frame
    seconds: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    frames: int | None = None
    format: str | None = None
    peak: float | None = None
    rms_db: float | None = None
    nan_samples: int = 0
    clipped_fraction: float = 0.0
    sha256: str | None = None
    size: int = 0
    mtime: float = 0.0
    problems: list[dict] = field(default_factory=list)  # {"level": "error"|"warning", "text": ...}

    def to_dict(self) -> dict:
        # by hand: dataclasses.asdict deep-copies every field, a visible cost over 20,000 files
        return {f: getattr(self, f) for f in _FIELDS} | {"problems": [dict(x) for x in self.problems]}

    @classmethod
    def from_dict(cls, d: dict) -> "Probe":
        """A probe cached in the manifest; TypeError when the cached one is of another shape."""
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or "ok" not in d or not isinstance(d.get("problems", []), list):
            raise TypeError("not a cached probe")
        return cls(**{k: v for k, v in d.items() if k in known})


def probe(path: Path, analyse_s: float = MAX_TRAIN_S, name: str | None = None) -> Probe:
    """Check one file; never raises: every failure becomes a problem naming the file.

    The file is opened once, as a regular file (a FIFO, a folder or a device is refused without
    blocking), hashed and decoded through that one descriptor.
    """
    path = Path(path)
    name = name or path.name
    p = Probe(ok=False)

    def err(text: str) -> Probe:
        p.problems.append({"level": "error", "text": text})
        return p

    try:
        fh = open_regular(path)
    except OSError as exc:
        return err(why_unreadable(path, exc).replace(path.name, name, 1))
    with fh:
        st = os.fstat(fh.fileno())
        p.size, p.mtime = st.st_size, st.st_mtime
        if st.st_size == 0:
            return err(f"{name} is an empty file (0 bytes). Re-export or re-copy it, or remove it from the dataset.")
        try:
            p.sha256 = file_sha256(fh)
            fh.seek(0)
        except OSError as exc:
            return err(why_unreadable(path, exc).replace(path.name, name, 1))
        if decode.needs_fallback(name, native_extensions()) or decode.needs_fallback(path, native_extensions()):
            return _probe_ffmpeg(fh, p, analyse_s, name)
        try:
            snd = sf.SoundFile(fh)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
            return err(f"{name} cannot be decoded as audio ({_decode_words(exc)}). It may be truncated, corrupt "
                       "or not audio at all: re-export it as WAV or FLAC, or remove it.")
        with snd:  # one decoder for the header and the samples: opening costs more than a short file's decode
            p.sample_rate, p.channels, p.frames = int(snd.samplerate), int(snd.channels), int(snd.frames)
            p.format = f"{snd.format} {snd.subtype}"
            if p.channels < 1:
                return err(f"{name} has no audio channels. Re-export it as mono or stereo.")
            if p.frames <= 0 or p.sample_rate <= 0:
                return err(f"{name} contains no audio (0 samples). Re-export it, or remove it from the dataset.")
            p.seconds = p.frames / p.sample_rate
            if not RATE_RANGE[0] <= p.sample_rate <= RATE_RANGE[1]:
                return err(f"{name} claims a sample rate of {p.sample_rate:,} Hz, which no music file has (usable: "
                           f"{RATE_RANGE[0] // 1000}–{RATE_RANGE[1] // 1000} kHz; ACE-Step works at 48 kHz). Its "
                           "header is damaged or it was exported wrongly: re-export it at 44.1 or 48 kHz.")
            if p.channels > MAX_CHANNELS:
                return err(f"{name} claims {p.channels} channels; its header is damaged. Re-export it as stereo.")
            per_sample = _PCM_BYTES.get(snd.subtype) if snd.format not in _COMPRESSED else None
            if per_sample and p.frames * p.channels * per_sample > st.st_size * 1.01 + 4096:
                held = st.st_size / (p.channels * per_sample * p.sample_rate)
                return err(f"{name}'s header claims {_hms(p.seconds)} of audio, but the file holds at most "
                           f"{_hms(held)}: the header is damaged or the file was cut short. Re-export or re-copy it.")
            try:
                _scan_samples(snd, p, analyse_s)
            except _ShortRead as exc:
                if exc.read == 0:
                    return err(f"{name}'s header claims {_hms(p.seconds)} of audio, but none of it could be "
                               f"decoded ({exc.why}): the file is truncated or its header is damaged. Re-export or "
                               "re-copy it.")
                return err(f"{name}'s header claims {_hms(p.seconds)} of audio, but decoding stopped after "
                           f"{_hms(exc.read / p.sample_rate)} ({exc.why}): the file is truncated or its header is "
                           "damaged. Re-export or re-copy it.")
    return _judge(p, analyse_s, name)


def _probe_ffmpeg(fh, p: Probe, analyse_s: float, name: str) -> Probe:
    """The probe of a file only FFmpeg decodes: same checks, frames counted as decoded (a compressed
    container's duration is a claim; past `analyse_s` the claim is all there is)."""
    def err(text: str) -> Probe:
        p.problems.append({"level": "error", "text": text})
        return p

    try:
        with decode.Reader(fh) as r:
            p.sample_rate, p.channels, p.format = r.sample_rate, r.channels, f"FFMPEG {r.codec.upper()}"
            if not RATE_RANGE[0] <= p.sample_rate <= RATE_RANGE[1] or p.channels > MAX_CHANNELS:
                return err(f"{name} declares {p.sample_rate:,} Hz and {p.channels} channels, which no music file "
                           "has: re-export it at 44.1 or 48 kHz in stereo.")
            limit = int(analyse_s * p.sample_rate)
            read = _stats(r.blocks(limit), p)
    except decode.DecodeError as exc:
        return err(f"{name} cannot be decoded as audio ({exc}). Re-export it as WAV or FLAC, or remove it.")
    if read == 0:
        return err(f"{name} contains no audio (0 samples). Re-export it, or remove it from the dataset.")
    declared = r.seconds
    p.frames = read if read < limit or not declared else max(read, int(round(declared * p.sample_rate)))
    p.seconds = p.frames / p.sample_rate
    return _judge(p, analyse_s, name)


def _judge(p: Probe, analyse_s: float, name: str) -> Probe:
    """The warnings (and the silence error) every decodable file gets, whichever decoder read it."""
    def warn(text: str) -> None:
        p.problems.append({"level": "warning", "text": text})

    p.ok = True

    if p.channels > 2:
        warn(f"{name} has {p.channels} channels; it will be mixed down to stereo. Export a stereo mix if the "
             "down-mix sounds wrong.")
    if p.sample_rate < 32000:
        warn(f"{name} is sampled at {p.sample_rate} Hz; it will be upsampled to 48 kHz but cannot gain the "
             "missing treble, so the adapter may learn a dull sound. Use a 44.1/48 kHz source if you have one.")
    if p.seconds > analyse_s:
        warn(f"{name} is {_hms(p.seconds)} long; only the first {_hms(analyse_s)} will be used. "
             "Split it into songs to use all of it.")
    elif p.seconds < 10:
        warn(f"{name} is only {p.seconds:.1f} s long; ACE-Step trains on 10–600 s of audio, so it adds little.")
    if p.nan_samples:
        warn(f"{name} contains {p.nan_samples} invalid (NaN/Inf) samples; they will be treated as silence. "
             "Re-export the file to be safe.")
    if p.peak is not None and p.peak < SILENT_PEAK:
        p.problems.append({"level": "error", "text": f"{name} is silent (peak below -70 dBFS). "
                           "Check the export, or remove it: there is nothing to learn from it."})
        p.ok = False
    elif p.clipped_fraction > CLIP_FRACTION:
        warn(f"{name} is clipped ({p.clipped_fraction:.1%} of samples at full scale); the adapter may learn "
             "the distortion. Use an unclipped master if you have one.")
    return p


_FIELDS = tuple(f.name for f in fields(Probe) if f.name != "problems")


class _ShortRead(Exception):
    def __init__(self, read: int, why: str):
        super().__init__(why)
        self.read, self.why = read, why


def _scan_samples(f: sf.SoundFile, p: Probe, analyse_s: float) -> None:
    limit = int(min(p.frames, analyse_s * p.sample_rate))
    tally = _Tally()
    try:
        for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True, frames=limit):
            tally.add(block)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise _ShortRead(tally.read, _decode_words(exc)) from None
    if tally.read == 0:
        raise _ShortRead(0, "no samples could be read")
    if tally.read < limit * 0.99:
        raise _ShortRead(tally.read, f"only {tally.read:,} of {limit:,} frames could be read")
    tally.into(p)


def _stats(blocks, p: Probe) -> int:
    """Fill p's statistics from (n, channels) blocks; returns the frames read."""
    tally = _Tally()
    for block in blocks:
        tally.add(block)
    if tally.read:
        tally.into(p)
    return tally.read


class _Tally:
    """Peak, RMS, NaN and clipping counts over streamed blocks."""

    def __init__(self):
        self.peak, self.sumsq, self.n, self.nan, self.clipped, self.read = 0.0, 0.0, 0, 0, 0, 0

    def add(self, block: np.ndarray) -> None:
        self.read += len(block)
        bad = ~np.isfinite(block)
        if bad.any():
            self.nan += int(bad.sum())
            block = np.where(bad, 0.0, block)
        a = np.abs(block)
        self.peak = max(self.peak, float(a.max(initial=0.0)))
        self.sumsq += float(np.square(block, dtype=np.float64).sum())
        self.clipped += int((a >= CLIP_LEVEL).sum())
        self.n += block.size

    def into(self, p: Probe) -> None:
        p.peak = self.peak
        p.rms_db = 10 * math.log10(self.sumsq / self.n) if self.sumsq > 0 else None
        p.nan_samples = self.nan
        p.clipped_fraction = self.clipped / self.n if self.n else 0.0


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# libsndfile's own words, some of them misleading for a file on disk ("possibly a pipe?" is its
# answer for an MP3 holding only an ID3 tag), turned into what they mean for a user
_LIBSNDFILE_WORDS = (
    ("possibly a pipe", "no audio stream was found in it"),
    ("format not recognised", "not a format this machine can decode"),
    ("malformed", "its format is recognised but the file is malformed"),
    ("psf_fseek", "the file ends before the audio its header describes"),
    ("unspecified internal error", "the decoder could not read it"),
)


def _decode_words(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^Error opening (<.*?>|'.*?'): ", "", text)
    low = text.lower()
    for needle, words in _LIBSNDFILE_WORDS:
        if needle in low:
            return words
    return text[:160]
