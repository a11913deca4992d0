"""events.jsonl: the append-only channel from a job to the dashboard (DESIGN.md, "Events").

Writer side: one JSON object per line, flushed at once, NaN/Inf written as null.
Reader side: `EventTail` keeps a byte offset and the trailing partial line, so a refresh reads
only the bytes appended since the last one, and notices when the file was truncated or replaced.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

EVENTS_FILE = "events.jsonl"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
        try:
            return _clean(v.item())
        except (TypeError, ValueError):
            return str(v)
    if isinstance(v, Path):
        return str(v)
    return v


def encode(event_type: str, **fields: Any) -> str:
    ev = {"t": round(time.time(), 3), "type": event_type, **fields}
    return json.dumps(_clean(ev), ensure_ascii=False, allow_nan=False, default=str)


class EventWriter:
    """Appends events to `<job_dir>/events.jsonl`; each line is written and flushed whole."""

    def __init__(self, job_dir: Path):
        self.path = Path(job_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def emit(self, event_type: str, **fields: Any) -> dict:
        line = encode(event_type, **fields)
        self._fh.write(line + "\n")
        self._fh.flush()
        return json.loads(line)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def append_event(job_dir: Path, event_type: str, **fields: Any) -> None:
    """One-shot append for writers that are not the job itself (e.g. reconcile marking `died`)."""
    with EventWriter(job_dir) as w:
        w.emit(event_type, **fields)


@dataclass
class EventTail:
    """Incremental reader state. Keep one per file (e.g. in st.session_state) and call `read_new`."""

    path: Path
    offset: int = 0
    partial: bytes = b""
    inode: int | None = None
    bad_lines: int = 0
    reset_count: int = 0  # how many times truncation/replacement forced a re-read from 0
    keep: bool = False  # also accumulate every event in `events` (costly for very long runs)
    events: list = field(default_factory=list, repr=False)

    def check_reset(self) -> bool:
        """True (and start over from byte 0) if the file was truncated or replaced since the last read.

        Callers that fold events into derived state call this first, so they know to rebuild it.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        replaced = (self.inode is not None and st.st_ino != self.inode) or st.st_size < self.offset
        if replaced:
            self.offset, self.partial, self.events = 0, b"", []
            self.reset_count += 1
        self.inode = st.st_ino
        return replaced

    def read_new(self, max_bytes: int | None = None) -> list[dict]:
        """Return the events appended since the last call (also appended to `self.events` if `keep`)."""
        self.check_reset()
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return []
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(max_bytes) if max_bytes else f.read()
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()  # '' when the chunk ended on a newline
        new = parse_lines(lines, self)
        if self.keep:
            self.events.extend(new)
        return new


def parse_lines(lines: list[bytes], tail: EventTail | None = None) -> list[dict]:
    lines = [raw for raw in (r.strip() for r in lines) if raw]
    if not lines:
        return []
    try:  # one C-level parse of the whole chunk; per-line only when something in it is damaged
        parsed = json.loads(b"[" + b",".join(lines) + b"]")
    except (json.JSONDecodeError, UnicodeDecodeError):
        parsed = []
        for raw in lines:
            try:
                parsed.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass
    out = [ev for ev in parsed if isinstance(ev, dict) and "type" in ev]
    if tail is not None:
        tail.bad_lines += len(lines) - len(out)
    return out


def read_all(path: Path) -> list[dict]:
    return EventTail(Path(path)).read_new()


def last_event(path: Path, types: Iterable[str] | None = None, scan_bytes: int = 65536,
               whole_file: bool = False) -> dict | None:
    """The last complete event (optionally of given types), reading only the file's end.

    With `whole_file`, an event type not found in the last `scan_bytes` is looked for in the whole
    file (slow on long runs: for one-off lookups like a run's `start`, never in a refresh loop).
    """
    wanted = set(types) if types else None
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return None
    window = min(4096, scan_bytes)  # the sidebar asks this of every job every few seconds: start small
    with open(path, "rb") as f:
        while True:
            start = max(0, size - window)
            f.seek(start)
            lines = f.read(size - start).split(b"\n")
            if start > 0:
                lines = lines[1:]  # first line may be cut
            for ev in reversed(parse_lines(lines)):
                if wanted is None or ev.get("type") in wanted:
                    return ev
            if start == 0 or window >= scan_bytes:
                break
            window = min(window * 4, scan_bytes)
    if whole_file and start > 0 and wanted is not None:
        return next((e for e in reversed(read_all(Path(path))) if e.get("type") in wanted), None)
    return None
