"""Files arriving through the browser: safe names, no silent overwrite, duplicates by content."""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from state.dataset.probe import audio_extensions
from state.fsutil import atomic_write_bytes, file_sha256

SIDECAR_EXTS = (".json",)
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]')
MAX_NAME_BYTES = 180


@dataclass
class UploadResult:
    original: str
    saved_as: str | None  # file name written, None if nothing was written
    status: str  # saved | duplicate | exists | rejected | replaced
    message: str


def safe_filename(name: str) -> str:
    """The last path component of `name`, with separators, control and reserved characters removed.

    Unicode letters and spaces are kept (they are fine on every filesystem we target); '../' and
    absolute paths cannot survive because only the final component is used.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]
    name = _BAD_CHARS.sub("_", name).strip().lstrip(".").strip()
    stem, ext = Path(name).stem, Path(name).suffix.lower()
    if not stem or stem in {".", ".."}:
        stem = "upload"
    while len((stem + ext).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem + ext


def _known_hashes(folder: Path) -> dict[str, str]:
    out = {}
    for p in folder.iterdir():
        if p.is_file() and not p.name.startswith("."):
            out[file_sha256(p)] = p.name
    return out


def save_uploads(folder: Path, files: list[tuple[str, bytes]], on_conflict: str = "skip") -> list[UploadResult]:
    """Save uploaded (name, bytes) pairs into `folder`.

    on_conflict: what to do when a *different* file already has the name: "skip" (report it,
    write nothing) or "replace" (the old file is kept as `<name>.replaced-<n>` first).
    Identical content already present under any name is reported and not written twice.
    """
    if on_conflict not in ("skip", "replace"):
        raise ValueError("on_conflict must be 'skip' or 'replace'")
    folder.mkdir(parents=True, exist_ok=True)
    allowed = set(audio_extensions()) | set(SIDECAR_EXTS)
    hashes = _known_hashes(folder)
    results = []
    for original, data in files:
        name = safe_filename(original)
        ext = Path(name).suffix.lower()
        if ext not in allowed:
            results.append(UploadResult(original, None, "rejected",
                           f"{original}: '{ext or 'no extension'}' is not an audio format this machine decodes "
                           f"or a .json sidecar. Convert it to WAV or FLAC and upload again."))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in hashes:
            results.append(UploadResult(original, None, "duplicate",
                           f"{original} is identical to {hashes[digest]} already in the dataset; skipped."))
            continue
        target = folder / name
        status = "saved"
        if target.exists():
            if on_conflict == "skip":
                results.append(UploadResult(original, None, "exists",
                               f"{name} already exists with different content; nothing was overwritten. Rename "
                               "the file, or choose 'replace existing files' (the old one is kept as a backup)."))
                continue
            n = 1
            while (backup := folder / f"{name}.replaced-{n}").exists():
                n += 1
            target.rename(backup)
            status = "replaced"
        atomic_write_bytes(target, data)
        hashes[digest] = name
        renamed = f" (saved as {name})" if name != original else ""
        msg = f"{original} replaced the old file, kept as {backup.name}" if status == "replaced" else f"{original} saved{renamed}"
        results.append(UploadResult(original, name, status, msg))
    return results
