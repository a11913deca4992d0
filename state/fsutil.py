"""The on-disk primitives every writer shares: atomic replace, JSON files, a file lock."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


class SaveError(OSError):
    """A write that failed and left the previous file untouched; the message says what to do."""


def _explain(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"Could not save {path}: the disk is full. Free some space and save again; the previous version is unchanged."
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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


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


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
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
    tmp = Path(tempfile.mkdtemp(prefix=prefix or f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
