"""Datasets: a folder of audio (+ sidecars) and its JSONL manifest (DESIGN.md, "Dataset manifest").

A dataset lives in `datasets/<name>/` (manifest.jsonl, dataset.json). Its audio is either in that
folder (uploads) or in an external folder named by dataset.json's `source`. The manifest is an
index rebuilt from the files and sidecars on every scan; edits write the sidecar, then the
manifest, each atomically and under one lock, so two editors of different tracks lose nothing.
"""
from __future__ import annotations

import json
import os
import stat
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from state import paths
from state.dataset.labels import LABEL_FIELDS, normalise_labels
from state.dataset.probe import Probe, audio_extensions, probe
from state.dataset.sidecar import SidecarError, prepare_labels, read_sidecar, sidecar_path
from state.fsutil import SaveError, atomic_write_many, atomic_write_text, locked, read_json, write_json

MANIFEST = "manifest.jsonl"
DATASET_FILE = "dataset.json"
RESERVED = {MANIFEST, DATASET_FILE}
_STATUSES = ("ok", "warning", "error")
_IN_ROW = ("seconds", "sample_rate", "channels", "sha256", "size", "mtime", "problems")  # not kept twice
PROBE_FIELDS = ("seconds", "sample_rate", "channels", "sha256", "size", "mtime")


class LabelError(ValueError):
    """Labels that cannot be saved; `problems` lists each one in words."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Dataset:
    name: str
    dir: Path  # datasets/<name>
    source: Path  # where the audio lives

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    @property
    def external(self) -> bool:
        return self.source.resolve() != self.dir.resolve()


@dataclass
class ScanResult:
    rows: list[dict]
    orphans: list[str] = field(default_factory=list)  # sidecars without audio, in words
    notes: list[str] = field(default_factory=list)  # dataset-wide messages (e.g. read-only folder)


# ---- datasets -------------------------------------------------------------------------------

def create_dataset(name: str, source: Path | None = None) -> Dataset:
    d = paths.dataset_dir(name)
    if (d / DATASET_FILE).exists():
        raise FileExistsError(f"A dataset named {name!r} already exists. Pick another name, or open it from the list.")
    src = Path(source).expanduser().resolve() if source else d
    if source and not src.is_dir():
        raise FileNotFoundError(f"Folder {src} does not exist. Check the path (it must be on this machine).")
    paths.ensure(d)
    write_json(d / DATASET_FILE, {"name": name, "source": str(src) if src != d else None,
                                  "created_at": time.time()})
    return Dataset(name, d, src)


def open_dataset(name: str) -> Dataset:
    d = paths.dataset_dir(name)
    meta = read_json(d / DATASET_FILE, default=None)
    if meta is None and not d.is_dir():
        raise FileNotFoundError(f"No dataset named {name!r} in {paths.datasets_dir()}.")
    src = Path(meta["source"]) if meta and meta.get("source") else d
    return Dataset(name, d, src)


def list_datasets() -> list[str]:
    root = paths.datasets_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# ---- manifest file ----------------------------------------------------------------------------

def read_manifest(ds: Dataset | Path) -> list[dict]:
    path = ds.manifest_path if isinstance(ds, Dataset) else Path(ds)
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    continue  # a damaged index line is rebuilt by the next scan
                if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("audio"), str):
                    if not isinstance(row.get("problems"), list) or row.get("status") not in _STATUSES:
                        row["problems"] = ["This row of the index is damaged; rescan the folder."]
                        row["status"] = "error"
                    rows.append(row)
    except (FileNotFoundError, UnicodeDecodeError):
        pass  # no index yet, or a damaged one: the next scan rebuilds it
    return rows


def write_manifest(ds: Dataset | Path, rows: Iterable[dict]) -> None:
    path = ds.manifest_path if isinstance(ds, Dataset) else Path(ds)
    text = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
    atomic_write_text(path, text)


# ---- scanning ---------------------------------------------------------------------------------

def printable(text: str) -> str:
    """A path as text that can be saved and shown: bytes that are not UTF-8 (kept by the OS as
    surrogates) become backslash escapes, so the name still tells which file it is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


@dataclass
class Listing:
    audio: list[Path] = field(default_factory=list)  # audio names, whatever kind of file they are
    sidecars: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # folders that could not be read


def list_folder(root: Path) -> Listing:
    """Every audio-named entry (including a folder, FIFO or dangling link named like audio: each
    gets a row saying what it is) and every sidecar, in one walk; hidden names are skipped."""
    exts = set(audio_extensions())
    out = Listing()

    def unreadable(exc: OSError) -> None:
        where = printable(str(Path(exc.filename).relative_to(root))) if exc.filename and \
            Path(exc.filename) != Path(root) else "the dataset folder"
        out.notes.append(f"{where} cannot be read ({exc.strerror}): files in it are not listed. "
                         "Make it readable (chmod a+rx) and rescan.")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        for fn in sorted(filenames) + [d for d in dirnames if Path(d).suffix.lower() in exts]:
            if fn.startswith("."):
                continue
            suffix = Path(fn).suffix.lower()
            if suffix in exts:
                out.audio.append(here / fn)
            elif suffix == ".json" and not (here == Path(root) and fn in RESERVED):
                out.sidecars.append(here / fn)
    out.audio.sort()
    return out


def find_audio(root: Path) -> list[Path]:
    return list_folder(root).audio


def _orphan_sidecars(ds: Dataset, listing: Listing) -> list[str]:
    stems = {(p.parent, p.stem) for p in listing.audio}
    return [f"{printable(p.relative_to(ds.source).as_posix())} has no audio file with the same name next to it, "
            "so its labels are not used. Add the audio, rename the sidecar to match, or delete it."
            for p in listing.sidecars
            if (p.parent, p.stem) not in stems and not (ds.dir == p.parent and p.name in RESERVED)]


def _same_audio(audio: Path, previous: dict) -> bool:
    try:
        st = os.stat(audio)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and previous.get("size") == st.st_size and previous.get("mtime") == st.st_mtime


def _cached_probe(audio: Path, previous: dict | None) -> Probe | None:
    """The previous scan's probe when the file is unchanged (same size and mtime), else None.

    The row keeps the probe's problems only once: they are the first `n_problems` of its own."""
    cached = (previous or {}).get("_probe")
    if not isinstance(cached, dict) or not _same_audio(audio, previous):
        return None
    try:
        if "n_problems" in cached:
            cached = {**cached, **{k: previous.get(k) for k in _IN_ROW},
                      "problems": _base_problems(previous)[:cached["n_problems"]]}
        return Probe.from_dict(cached)
    except (TypeError, ValueError):
        return None  # a cached probe of another shape (an older version, a damaged line): probe again


def build_row(ds: Dataset, audio: Path, previous: dict | None = None) -> dict:
    """One manifest row from the audio file and its sidecar (probe reused if the file is unchanged).

    Never raises for anything about the file: each step's failure is a problem on the row.
    """
    rid_raw = audio.relative_to(ds.source).as_posix()
    rid = printable(rid_raw)
    if rid != rid_raw:
        return _problem_row(ds, audio, rid, f"{rid} has a name that is not valid UTF-8 text, so it cannot be saved "
                            "in the dataset's index or shown. Rename it (any letters are fine once the name is "
                            "re-typed) and rescan.")
    name = audio.name
    pr = _cached_probe(audio, previous) or probe(audio, name=name)
    problems = [p for p in pr.problems]
    sc = read_sidecar(sidecar_path(audio))
    labels: dict = {}
    if sc.problem:
        problems.append({"level": "warning", "text": sc.problem})
    elif sc.data is not None:
        problems += [{"level": "warning", "text": w} for w in sc.warnings]
        raw = {k: v for k, v in sc.data.items() if k not in sc.ignored}
        labels, label_problems = normalise_labels(raw)
        problems += [{"level": "warning", "text": f"{sc.path.name}: {t} (this label is ignored until fixed)"}
                     for t in label_problems]
    by = (sc.data or {}).get("labeled_by")
    row = {
        "id": rid,
        "audio": str(audio),
        **{k: labels.get(k) for k in LABEL_FIELDS},
        "seconds": round(pr.seconds, 3) if pr.seconds is not None else None,
        "sample_rate": pr.sample_rate,
        "channels": pr.channels,
        "sha256": pr.sha256,
        "size": pr.size,
        "mtime": pr.mtime,
        "labeled_by": by if isinstance(by, str) and by in ("user", "dsp", "lm") else None,
        "sidecar": sc.path.name if sc.exists else None,
        "updated_at": time.time(),
        "_probe": {**{k: v for k, v in pr.to_dict().items() if k not in _IN_ROW}, "n_problems": len(pr.problems)},
        "_sidecar_sig": list(sc.signature) if sc.signature else None,
    }
    _set_problems(row, problems)
    return row


def _unchanged(audio: Path, previous: dict | None) -> dict | None:
    """The previous row again when neither the audio nor its sidecar changed since it was built
    (two stats): a rescan of 20,000 unchanged files reads no file at all."""
    if not previous or "_flags" not in previous or not isinstance(previous.get("_probe"), dict) or \
            previous.get("_sidecar_sig") != _sidecar_signature(audio) or not _same_audio(audio, previous):
        return None
    row = dict(previous)
    _set_problems(row, _base_problems(previous))
    return row


def _problem_row(ds: Dataset, audio: Path, rid: str, text: str) -> dict:
    row = {"id": rid, "audio": printable(str(audio)), **{k: None for k in LABEL_FIELDS}, "seconds": None,
           "sample_rate": None, "channels": None, "sha256": None, "size": 0, "mtime": 0.0, "labeled_by": None,
           "sidecar": None, "updated_at": time.time(), "_sidecar_sig": None}
    _set_problems(row, [{"level": "error", "text": text}])
    return row


def _guarded_row(ds: Dataset, audio: Path, previous: dict | None) -> dict:
    # build_row guards every step it knows; this is the net for the one nobody thought of, so a
    # single file can never take the scan (and the page) down with it
    try:
        return build_row(ds, audio, previous)
    except Exception as exc:  # noqa: BLE001
        rid = printable(audio.relative_to(ds.source).as_posix())
        return _problem_row(ds, audio, rid, f"{rid} could not be checked ({type(exc).__name__}: "
                            f"{str(exc)[:200]}). Re-copy or remove it, and rescan.")


def _sidecar_signature(audio: Path) -> list | None:
    """What read_sidecar records as Sidecar.signature, from a stat alone."""
    try:
        st = os.stat(os.path.splitext(audio)[0] + ".json")  # sidecar_path without pathlib's cost
    except (OSError, ValueError):
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size] if stat.S_ISREG(st.st_mode) else None


def _set_problems(row: dict, problems: list[dict], flags: int = 0) -> None:
    """The row's problems: its own, then `flags` added by this scan (identical content, shared names)."""
    row["problems"] = [p["text"] for p in problems]
    row["problem_levels"] = [p["level"] for p in problems]
    row["_flags"] = flags
    levels = set(row["problem_levels"])
    row["status"] = "error" if "error" in levels else "warning" if "warning" in levels else "ok"


def scan(ds: Dataset, progress=None) -> ScanResult:
    """Rebuild the manifest from the folder. Unchanged files are not probed again.

    Rows are built without the lock (a large scan must not block saving labels); under the lock
    each row whose sidecar changed meanwhile (a label save raced the scan) is built again, so a
    scan never writes back a row older than what was just saved.
    """
    if not ds.source.is_dir():
        raise FileNotFoundError(f"The dataset folder {ds.source} is gone. Reconnect the drive or create the dataset again.")
    previous = {r["id"]: r for r in read_manifest(ds)}
    listing = list_folder(ds.source)
    rows, changed = [], len(listing.audio) != len(previous)
    for i, a in enumerate(listing.audio):
        before = previous.get(printable(a.relative_to(ds.source).as_posix()))
        row = _unchanged(a, before)
        if row is None:
            row, changed = _guarded_row(ds, a, before), True
        rows.append(row)
        if progress:
            progress(i + 1, len(listing.audio), row["id"])
    result = ScanResult(rows, _orphan_sidecars(ds, listing), list(listing.notes))
    try:
        with locked(ds.manifest_path):
            for i, (a, row) in enumerate(zip(listing.audio, rows)):
                if "_probe" in row and row.get("_sidecar_sig") != _sidecar_signature(a):
                    rows[i], changed = _guarded_row(ds, a, row), True
            _flag_duplicates(rows)
            if changed or [r["id"] for r in rows] != list(previous):
                write_manifest(ds, rows)
    except SaveError as exc:
        _flag_duplicates(rows)
        result.notes.append(str(exc))
    if not os.access(ds.source, os.W_OK):
        result.notes.append(f"The folder {ds.source} is read-only: labels cannot be saved next to the audio. "
                            "Make it writable, or upload the files into a new dataset instead.")
    return result


def _flag_duplicates(rows: list[dict]) -> None:
    _flag_shared_basenames(rows)
    _flag_same_content(rows)


def _flag_same_content(rows: list[dict]) -> None:
    groups = defaultdict(list)
    for r in rows:
        if r.get("sha256"):
            groups[r["sha256"]].append(r)
    for group in groups.values():
        if len(group) < 2:
            continue
        for r in group:
            rest = [o["id"] for o in group if o is not r]
            others = ", ".join(rest[:3]) + (f" and {len(rest) - 3:,} more" if len(rest) > 3 else "")
            text = (f"{Path(r['id']).name} is the same audio, byte for byte, as {others}; it would be trained on "
                    "more than once. Remove the extra copies (or keep them on purpose to weight that song).")
            _flag(r, text)


def _flag_shared_basenames(rows: list[dict]) -> None:
    groups = defaultdict(list)
    for r in rows:
        groups[str(Path(r["id"]).with_suffix(""))].append(r)
    for stem, group in groups.items():
        if len(group) < 2:
            continue
        names = ", ".join(Path(r["id"]).name for r in group)
        text = (f"{names} share the name '{Path(stem).name}', so {Path(stem).name}.json labels all of them. "
                "Rename one of them if they are different songs, or remove the duplicate.")
        for r in group:
            _flag(r, text)


def _base_problems(row: dict) -> list[dict]:
    own = _problems_of(row)
    return own[:len(own) - int(row.get("_flags") or 0)]


def _flag(row: dict, text: str) -> None:
    if text not in row.get("problems", []):
        _set_problems(row, _problems_of(row) + [{"level": "warning", "text": text}], int(row.get("_flags") or 0) + 1)


def _problems_of(row: dict) -> list[dict]:
    return [{"level": lv, "text": t} for t, lv in zip(row.get("problems", []), row.get("problem_levels", []))]


# ---- editing ----------------------------------------------------------------------------------

def validate_labels(labels: dict) -> dict:
    """Normalise edited labels; raise LabelError naming every bad value. Empty means 'clear it'."""
    clean, problems = normalise_labels(labels)
    if problems:
        raise LabelError(problems)
    return {k: clean.get(k) for k in LABEL_FIELDS if k in labels}


def save_labels(ds: Dataset, edits: dict[str, dict], labeled_by: str = "user",
                replace_broken: bool = False) -> list[dict]:
    """Write edited labels for several tracks: sidecars first, then the manifest, under one lock.

    `edits` maps track id -> {field: value}. Every value is validated before anything is written.
    Returns the updated rows. Raises LabelError / SidecarError / SaveError with plain messages.
    """
    cleaned, problems = {}, []
    for tid, labels in edits.items():
        try:
            cleaned[tid] = validate_labels(labels)
        except LabelError as exc:
            problems += [f"{Path(tid).name}: {p}" for p in exc.problems]
    if problems:
        raise LabelError(problems)
    with locked(ds.manifest_path):
        rows = read_manifest(ds)  # re-read under the lock: another editor may have saved meanwhile
        by_id = {r["id"]: r for r in rows}
        missing = [t for t in cleaned if t not in by_id]
        if missing:
            raise LabelError([f"{m} is not in the dataset any more; rescan the folder." for m in missing])
        # every sidecar is prepared (and refused, if broken) before the first one is written
        writes = [w for tid, labels in cleaned.items()
                  for w in prepare_labels(Path(by_id[tid]["audio"]), labels, labeled_by, replace_broken)]
        if len({path for path, _ in writes}) == len(writes):
            atomic_write_many(writes)
        else:  # two tracks share one sidecar (song.wav + song.flac): merge into it one after the other
            for tid, labels in cleaned.items():
                atomic_write_many(prepare_labels(Path(by_id[tid]["audio"]), labels, labeled_by, replace_broken))
        updated = []
        for tid in cleaned:
            new = _guarded_row(ds, Path(by_id[tid]["audio"]), by_id[tid])
            by_id[tid] = new
            updated.append(new)
        rows = [by_id[r["id"]] for r in rows]
        _flag_duplicates(rows)
        write_manifest(ds, rows)
    return updated


def _cell(v):
    if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def edits_from_table(rows: list[dict], records: list[dict]) -> dict[str, dict]:
    """Which label cells an editor table changed, as {track id: {field: new value}}."""
    by_id = {r["id"]: r for r in rows}
    out: dict[str, dict] = {}
    for rec in records:
        row = by_id.get(rec.get("id"))
        if row is None:
            continue
        changed = {k: _cell(rec.get(k)) for k in LABEL_FIELDS
                   if k in rec and _cell(rec.get(k)) != _cell(row.get(k))}
        if changed:
            out[row["id"]] = changed
    return out


def public_row(row: dict) -> dict:
    """A row without internal cache fields (what jobs and exports see)."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def summary(rows: list[dict]) -> dict:
    counts = {"ok": 0, "warning": 0, "error": 0}
    for r in rows:
        counts[r.get("status", "error")] += 1
    usable = [r for r in rows if r.get("status") != "error"]
    captioned = sum(1 for r in usable if r.get("caption") or r.get("lyrics"))
    seconds = sum(min(r.get("seconds") or 0, 600) for r in usable)
    if not usable:
        verdict = "Cannot train yet: add at least one decodable audio file."
    elif captioned < len(usable):
        verdict = (f"Can train on {len(usable)} track(s). {len(usable) - captioned} have no caption or lyrics: "
                   "captions are strongly recommended (label them here, or run Auto-label).")
    else:
        verdict = f"Ready to train on {len(usable)} track(s)."
    return {**counts, "tracks": len(rows), "usable": len(usable), "captioned": captioned,
            "seconds": seconds, "can_train": bool(usable), "verdict": verdict}


__all__ = ["Dataset", "ScanResult", "LabelError", "SidecarError", "SaveError", "create_dataset",
           "open_dataset", "list_datasets", "read_manifest", "write_manifest", "scan", "save_labels",
           "validate_labels", "summary", "public_row", "edits_from_table", "find_audio", "build_row"]
