"""The on-disk primitives every writer shares: atomic replace, JSON files, a file lock, and the
guarded reads every scanner shares (regular files only, never blocking on a FIFO)."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Iterator

NAME_MAX = 255  # bytes in one file name on ext4, xfs, btrfs, tmpfs
MAX_JSON_DEPTH = 64  # no file of ours nests deeper; a deeper one is damaged or hostile


class SaveError(OSError):
    """A write that failed and left the previous file untouched; the message says what to do."""


class DamagedFile(ValueError):
    """A file that exists but cannot be used; the message names the file and the reason."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} is damaged ({reason})")
        self.path, self.reason = Path(path), reason


class NotAFile(OSError):
    """A path that is a folder, a FIFO, a device or a socket where a regular file was expected."""


def disk_full_message(path: Path) -> str:
    return f"disk full at {path}: free space (Runs → delete)"


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _explain(path: Path, exc: OSError) -> str:
    if is_disk_full(exc):
        return (f"Could not save {path}: the disk is full ({disk_full_message(path.parent)}). "
                "The previous version is unchanged.")
    if exc.errno == errno.ENAMETOOLONG:
        return (f"Could not save {path}: the name is longer than the file system allows ({NAME_MAX} bytes). "
                "Rename the file shorter and try again; nothing was changed.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Could not save {path}: the folder is read-only. Make it writable (or copy the dataset somewhere writable) and save again; nothing was changed."
    return f"Could not save {path}: {exc.strerror or exc}. The previous version is unchanged."


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target.

    A crash or a full disk leaves either the old file or the new one, never half of each.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        with contextlib.suppress(OSError):  # directory fsync makes the rename durable; not all FS allow it
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        raise SaveError(exc.errno, _explain(path, exc)) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_many(items: list[tuple[Path, bytes]]) -> None:
    """atomic_write_bytes for many files at once: each file is replaced whole, and all of them are
    made durable by one flush (os.sync) instead of one fsync each, which on a slow disk is the
    difference between seconds and many minutes for a 20,000-track label import."""
    if len(items) <= 1:
        for path, data in items:
            atomic_write_bytes(path, data)
        return
    staged: list[tuple[str, Path]] = []
    current = Path(items[0][0])
    try:
        for path, data in items:
            current = Path(path)
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(current.name), suffix=".tmp", dir=current.parent)
            staged.append((tmp, current))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        os.sync()
        while staged:
            tmp, current = staged[0]
            os.replace(tmp, current)
            staged.pop(0)
    except OSError as exc:
        raise SaveError(exc.errno, _explain(current, exc)) from exc
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for folder in {Path(p).parent for p, _ in items}:
        with contextlib.suppress(OSError):
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def temp_prefix(name: str, room: int = 16) -> str:
    """`.<name>.` cut so that the prefix plus `room` bytes (random part, suffix) fits in one name.

    A 250-byte audio name is legal; its temp sibling `.<name>.XXXXXXXX.tmp` would not be.
    """
    budget = NAME_MAX - room - 2
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > budget:
        name = raw[:budget].decode("utf-8", "ignore")
    return f".{name}."


def fit_name(name: str, tail: str) -> str:
    """`name + tail` cut at the end of `name` so the whole stays within NAME_MAX bytes."""
    budget = NAME_MAX - len(tail.encode("utf-8"))
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > budget:
        name = raw[:budget].decode("utf-8", "ignore")
    return name + tail


def dumps_exact(obj: Any, **kw: Any) -> str:
    """json.dumps that keeps non-ASCII text readable, escaping only when a string holds lone
    surrogates (from a `\\ud800` in someone's file), which UTF-8 cannot encode."""
    text = json.dumps(obj, ensure_ascii=False, **kw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, ensure_ascii=True, **kw)
    return text


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_exact(obj, indent=2, allow_nan=False) + "\n")


def json_depth(obj: Any) -> int:
    """How deeply lists and objects nest (iterative: a hostile file cannot overflow the stack)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                break
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_json(path: Path, raw: bytes, **kw: Any) -> Any:
    """Decode and parse one JSON document; any failure is a DamagedFile naming what is wrong."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DamagedFile(path, f"not UTF-8 text at byte {exc.start}") from None
    if not text.strip():
        raise DamagedFile(path, "empty")
    try:
        obj = json.loads(text, **kw)
    except json.JSONDecodeError as exc:
        raise DamagedFile(path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise DamagedFile(path, f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise DamagedFile(path, f"nested more than {MAX_JSON_DEPTH} levels deep")
    return obj


def read_json(path: Path, default: Any = None, max_bytes: int = 16 << 20) -> Any:
    """The parsed file, `default` when it does not exist; DamagedFile when it cannot be used."""
    path = Path(path)
    try:
        with open_regular(path) as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        return default
    except NotAFile as exc:
        raise DamagedFile(path, str(exc)) from None
    except OSError as exc:
        raise DamagedFile(path, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise DamagedFile(path, f"larger than {max_bytes >> 20} MB")
    return parse_json(path, raw)


def read_json_object(path: Path) -> tuple[dict, str | None]:
    """A JSON object file for readers that must go on: ({}, None) when missing, ({}, reason) when
    damaged or not an object, so a page can list the file as damaged instead of crashing."""
    try:
        obj = read_json(path, default={})
    except DamagedFile as exc:
        return {}, str(exc)
    if not isinstance(obj, dict):
        return {}, f"{path} is damaged (a JSON {type(obj).__name__}, not an object)"
    return obj, None


# ---- reading files of unknown kind --------------------------------------------------------------

def kind_of(mode: int) -> str | None:
    """What a path is in words when it is not a regular file; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading, or raise NotAFile saying what the path is instead.

    O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; the kind is checked on
    the open descriptor (fstat), so nothing can be swapped in between the check and the read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket cannot be opened at all
            raise NotAFile(errno.ENXIO, f"{Path(path).name} is a socket, not a file") from None
        raise
    kind = kind_of(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise NotAFile(errno.EINVAL, f"{Path(path).name} is {kind}, not a file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def why_unreadable(path: Path, exc: OSError) -> str:
    """One sentence naming the file, what went wrong and what to do, for any failed open/read."""
    path = Path(path)
    name = path.name
    if isinstance(exc, NotAFile):
        return (f"{exc.strerror}: remove it or rename it so its name does not end in "
                f"{path.suffix or 'an audio extension'}.")
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"{name} is a symbolic link to {target}, which does not exist. Fix the link or remove it."
    if isinstance(exc, FileNotFoundError):
        return f"{name} disappeared while it was being checked. Rescan the folder."
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{name} cannot be read: permission denied. Make it readable (chmod a+r) or remove it."
    if exc.errno == errno.ELOOP:
        return f"{name} is a symbolic link that points to itself (a loop). Fix the link or remove it."
    if exc.errno == errno.ENAMETOOLONG:
        return f"{name} has a name longer than {NAME_MAX} bytes. Rename it shorter."
    return f"{name} cannot be read ({exc.strerror or exc}). Copy it again or remove it."


# ---- write failures the dashboard shows once ------------------------------------------------------

_write_failures: dict[int, tuple[Path, str]] = {}  # st_dev of the file system -> (path, message)
_failures_lock = threading.Lock()


def note_write_failure(path: Path, exc: OSError) -> str:
    """Remember a failed background write (a reader's bookkeeping, never the user's data) so the
    dashboard can say it once per file system instead of crashing or repeating it per job."""
    path = Path(path)
    msg = disk_full_message(path) if is_disk_full(exc) else f"could not write {path}: {exc.strerror or exc}"
    try:
        dev = os.stat(path if path.exists() else path.parent).st_dev
    except OSError:
        dev = -1
    with _failures_lock:
        _write_failures.setdefault(dev, (path, msg))
    return msg


def write_failures() -> list[str]:
    """Messages of failed writes, one per file system, forgotten once that file system has room again."""
    with _failures_lock:
        items = list(_write_failures.items())
    out = []
    for dev, (path, msg) in items:
        if has_room(path):
            with _failures_lock:
                _write_failures.pop(dev, None)
        else:
            out.append(msg)
    return out


def has_room(path: Path, need: int = 256 << 10) -> bool:
    """Whether the file system holding `path` (or its nearest existing parent) has `need` bytes free."""
    for p in (path, *path.parents):
        try:
            return shutil.disk_usage(p).free >= need
        except OSError:
            continue
    return False


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` + '.lock', across processes (fcntl.flock)."""
    lock_path = Path(str(path) + ".lock")
    try:
        fh = open(lock_path, "a+")
    except OSError as exc:
        raise SaveError(exc.errno, _explain(Path(path), exc)) from exc
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def file_sha256(path: Path | BinaryIO, block: int = 1 << 20) -> str:
    """sha256 of a regular file (a path, or an open file read from where it stands)."""
    if not hasattr(path, "read"):
        with open_regular(Path(path)) as f:
            return file_sha256(f, block)
    h = hashlib.sha256()
    while chunk := path.read(block):
        h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def staged_dir(dest: Path, prefix: str | None = None) -> Iterator[Path]:
    """Build a folder in a hidden temp sibling and swap it in whole when the block ends.

    Readers see the old folder or the new one, never a half-written one; a crash or an exception
    leaves the old folder as it was and removes the temp one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix or temp_prefix(dest.name), dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
