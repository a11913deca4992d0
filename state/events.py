"""events.jsonl: the append-only channel from a job to the dashboard (DESIGN.md, "Events").

Writer side: one JSON object per line, flushed at once, NaN/Inf written as null.
Reader side: `EventTail` keeps a byte offset and the trailing partial line, so a refresh reads
only the bytes appended since the last one, and notices when the file was truncated or replaced.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from state.fsutil import SaveError, _explain, is_disk_full

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
    """Appends events to `<job_dir>/events.jsonl`, each line whole or not at all.

    A failed write (a full disk) is cut back off the file, so no partial line survives; a torn
    tail left by a process killed mid-write is cut off when the next writer opens the file, so
    it can never glue itself to the next event. With `reserve`, the writer holds a small ballast
    file it gives up on the first ENOSPC, so the job can still record why it ended.
    """

    RESERVE_BYTES = 256 << 10

    def __init__(self, job_dir: Path, reserve: bool = False):
        self.path = Path(job_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._held = False
        self._reserve = self.path.with_name(".events.reserve") if reserve else None
        with self.exclusive():
            _cut_torn_tail(self._fd)
        if self._reserve is not None:
            _make_reserve(self._reserve, self.RESERVE_BYTES)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator["EventWriter"]:
        """Hold the file's lock across a check and an append (e.g. reconcile's `end`)."""
        if self._held:
            yield self
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._held = True
        try:
            yield self
        finally:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def emit(self, event_type: str, **fields: Any) -> dict:
        line = encode(event_type, **fields)
        data = (line + "\n").encode("utf-8", "surrogateescape")
        with self.exclusive():
            size = os.fstat(self._fd).st_size
            try:
                written = os.write(self._fd, data)
                if written != len(data):  # a short write is how a nearly full disk answers
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, size)
                if is_disk_full(exc) and self._reserve is not None:
                    self._reserve.unlink(missing_ok=True)  # room for the error and end events
                    self._reserve = None
                raise SaveError(exc.errno, _explain(self.path, exc)) from exc
        return json.loads(line)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._reserve is not None:
            self._reserve.unlink(missing_ok=True)

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _cut_torn_tail(fd: int) -> None:
    # json.dumps never writes a raw newline, so bytes after the last one are half an event
    size = os.fstat(fd).st_size
    if size == 0:
        return
    back = min(size, 1 << 20)
    data = os.pread(fd, back, size - back)
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n")
    if cut < 0 and back < size:
        return  # a line over 1 MB with no end in sight: leave it; readers skip it
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size - back + cut + 1)


def _make_reserve(path: Path, nbytes: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)  # the disk is already full (or the FS cannot): no reserve
        return
    os.close(fd)


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
    anchor: bytes = b""  # the last bytes before `offset`, to notice a rewrite that kept the size

    ANCHOR = 64

    def check_reset(self) -> bool:
        """True (and start over from byte 0) if the file was truncated or replaced since the last read.

        Callers that fold events into derived state call this first, so they know to rebuild it.
        A writer that cut a failed line off and appended the next one leaves the size past our
        offset but changes the bytes before it: the anchor catches that too.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        replaced = (self.inode is not None and st.st_ino != self.inode) or st.st_size < self.offset
        if not replaced and self.anchor:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.offset - len(self.anchor))
                    replaced = f.read(len(self.anchor)) != self.anchor
            except OSError:
                replaced = True
        if replaced:
            self.offset, self.partial, self.events, self.anchor = 0, b"", [], b""
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
        self.anchor = (self.anchor + data[-self.ANCHOR:])[-self.ANCHOR:]
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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        parsed = []
        for raw in lines:
            try:
                parsed.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                if (ev := _after_torn_start(raw)) is not None:
                    parsed.append(ev)
    out = [ev for ev in parsed if isinstance(ev, dict) and "type" in ev]
    if tail is not None:
        tail.bad_lines += len(lines) - len(out)
    return out


def _after_torn_start(raw: bytes) -> dict | None:
    # An older writer could leave half a line that the next event was glued to; every event
    # starts with `{"t": ` (encode puts t first), so the whole event after the torn bytes is found.
    at = raw.find(_EVENT_START, 1)
    while at > 0:
        try:
            ev = json.loads(raw[at:])
            if isinstance(ev, dict):
                return ev
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            pass
        at = raw.find(_EVENT_START, at + 1)
    return None


_EVENT_START = b'{"t": '


def read_all(path: Path) -> list[dict]:
    return EventTail(Path(path)).read_new()


def last_event(path: Path, types: Iterable[str] | None = None, scan_bytes: int = 65536,
               whole_file: bool = False, since: int = 0) -> dict | None:
    """The last complete event (optionally of given types), reading only the file's end.

    With `whole_file`, an event type not found in the last `scan_bytes` is looked for in the whole
    file (slow on long runs: for one-off lookups like a run's `start`, never in a refresh loop).
    `since` is a byte offset: events before it (an earlier launch's) are not looked at.
    """
    wanted = set(types) if types else None
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return None
    since = max(0, min(int(since), size))
    window = min(4096, scan_bytes)  # the sidebar asks this of every job every few seconds: start small
    with open(path, "rb") as f:
        while True:
            start = max(since, size - window)
            f.seek(start)
            lines = f.read(size - start).split(b"\n")
            if start > since:
                lines = lines[1:]  # first line may be cut
            for ev in reversed(parse_lines(lines)):
                if wanted is None or ev.get("type") in wanted:
                    return ev
            if start == since or window >= scan_bytes:
                break
            window = min(window * 4, scan_bytes)
    if whole_file and start > since and wanted is not None:
        tail = EventTail(Path(path), offset=since)
        return next((e for e in reversed(tail.read_new()) if e.get("type") in wanted), None)
    return None
