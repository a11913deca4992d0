"""Per-track sidecar JSON (`song.wav` + `song.json`): the source of truth for a track's labels.

Reading never changes the file. A sidecar that cannot be parsed is reported and left exactly as
it is; writing over it needs an explicit `replace_broken=True`, which keeps a backup first.
"""
from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from state.dataset.labels import LABEL_FIELDS, MAX_CHARS
from state.fsutil import (
    MAX_JSON_DEPTH,
    NAME_MAX,
    DamagedFile,
    atomic_write_bytes,
    dumps_exact,
    fit_name,
    open_regular,
    parse_json,
    why_unreadable,
)

# A label file is a few KB (the longest label, lyrics, is cut at MAX_CHARS["lyrics"] characters);
# a larger one is not read at all, so a stray 50 MB file cannot stall every scan.
MAX_SIDECAR_BYTES = 1 << 20


@dataclass
class Sidecar:
    path: Path
    data: dict | None  # None when missing or unreadable
    problem: str | None = None  # why it could not be used, in words, naming the file
    warnings: list[str] = field(default_factory=list)  # usable, but something in it is ignored
    ignored: tuple[str, ...] = ()  # label keys not used (given twice); kept in the file as they are
    signature: tuple | None = None  # (inode, mtime_ns, size) when read: tells a later save apart

    @property
    def exists(self) -> bool:
        return self.signature is not None or self.problem is not None

    @property
    def broken(self) -> bool:
        return self.problem is not None


class SidecarError(ValueError):
    pass


def sidecar_path(audio: Path) -> Path:
    return Path(audio).with_suffix(".json")


def read_sidecar(path: Path, name: str | None = None) -> Sidecar:
    """Read a sidecar without changing it; never raises: a problem names the file and the fix."""
    path = Path(path)
    name = name or path.name
    try:
        with open_regular(path) as f:
            st = os.fstat(f.fileno())
            raw = f.read(MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        if path.is_symlink():
            return Sidecar(path, None, why_unreadable(path, FileNotFoundError()).replace(path.name, name, 1))
        return Sidecar(path, None)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return Sidecar(path, None, f"labels for this track cannot be saved: its sidecar {name} would be longer "
                           f"than the file system's {NAME_MAX}-byte name limit. Rename the audio file shorter.")
        text = why_unreadable(path, exc).replace(path.name, name, 1)
        return Sidecar(path, None, text.replace("an audio extension", ".json"))
    sig = (st.st_ino, st.st_mtime_ns, st.st_size)
    if len(raw) > MAX_SIDECAR_BYTES:
        return Sidecar(path, None, f"{name} is {st.st_size / 1e6:.1f} MB; a label file is a few KB (captions up to "
                       f"{MAX_CHARS['caption']:,} characters, lyrics up to {MAX_CHARS['lyrics']:,}), so it was not "
                       "read. Shorten it; it was left untouched.", signature=sig)
    dupes: dict[int, list[str]] = {}  # id of a parsed object -> its keys given more than once

    def pairs(items: list) -> dict:
        obj = dict(items)
        if len(obj) < len(items):
            keys = [k for k, _ in items]
            dupes[id(obj)] = [k for k in obj if keys.count(k) > 1]
        return obj

    try:
        data = parse_json(path, raw, object_pairs_hook=pairs)
    except DamagedFile as exc:
        return Sidecar(path, None, _words(name, exc.reason), signature=sig)
    if not isinstance(data, dict):
        return Sidecar(path, None, f"{name} holds a JSON {type(data).__name__}, not an object like "
                       "{\"caption\": \"...\"}. Fix it and rescan; it was left untouched.", signature=sig)
    twice = tuple(k for k in dupes.get(id(data), []) if k in LABEL_FIELDS)
    warnings = [f"{name} has the key {k!r} more than once, so which value is meant is unclear; {k} is ignored "
                "until only one is left (fix it in a text editor, or save a new value here)" for k in twice]
    return Sidecar(path, data, warnings=warnings, ignored=twice, signature=sig)


def _words(name: str, reason: str) -> str:
    if reason == "empty":
        return f"{name} is empty. Delete it or fill in labels; it was left untouched."
    if reason.startswith("not UTF-8"):
        return (f"{name} is {reason}. Open it in a text editor and save it as UTF-8; it was left untouched.")
    if reason.startswith("nested"):
        return (f"{name} is {reason}; a label file is a flat object like {{\"caption\": \"...\"}} "
                f"(at most {MAX_JSON_DEPTH} levels). Fix it and rescan; it was left untouched.")
    return f"{name} is {reason}. Fix it in a text editor and rescan; it was left untouched."


def write_labels(audio: Path, labels: dict, labeled_by: str | None, replace_broken: bool = False) -> Path:
    """Merge `labels` (already normalised) into the sidecar, keeping every key we don't manage.

    A label set to None/"" is removed. Refuses to touch a broken sidecar unless replace_broken,
    in which case the broken bytes are kept as `<name>.json.broken-<time>` first.
    """
    writes = prepare_labels(audio, labels, labeled_by, replace_broken)
    for path, data in writes:
        atomic_write_bytes(path, data)
    return writes[-1][0]


def prepare_labels(audio: Path, labels: dict, labeled_by: str | None,
                   replace_broken: bool = False) -> list[tuple[Path, bytes]]:
    """What write_labels would write, as (path, bytes) pairs (a backup first, if any), so many
    tracks can be checked before anything is written and then written in one batch."""
    sc = read_sidecar(sidecar_path(audio))
    unresolved = [k for k in sc.ignored if k not in labels]
    if unresolved and not sc.broken:  # rewriting would silently keep one of the two values
        sc.problem = (f"{sc.path.name} has {', '.join(unresolved)} more than once; fix it in a text editor, or save "
                      "a value for it here, so neither copy is dropped without you choosing")
    writes = []
    if sc.broken:
        if not replace_broken or sc.signature is None:  # not a readable file: nothing to back up safely
            raise SidecarError(sc.problem)
        backup = sc.path.with_name(fit_name(sc.path.name, f".broken-{int(time.time())}"))
        with open_regular(sc.path) as f:
            writes.append((backup, f.read()))
    data = dict(sc.data or {})
    for key in LABEL_FIELDS:
        if key in labels:
            if labels[key] is None or labels[key] == "":
                data.pop(key, None)
            else:
                data[key] = labels[key]
    if labeled_by:
        data["labeled_by"] = labeled_by
    writes.append((sc.path, (dumps_exact(data, indent=2) + "\n").encode("utf-8")))
    return writes
