"""A really full disk for tests: a small tmpfs mounted on a folder (root only), and a filler that
takes every free byte. Tests that need it skip, saying why, where mounting is not allowed."""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("the full-disk test mounts a small tmpfs, which needs root")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip() or out.returncode}): no full-disk test")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path) -> Path:
    """Write a filler file until the file system is full; returns it (delete it to free the space)."""
    filler = Path(where) / "filler.bin"
    chunk = b"\0" * (64 << 10)
    with open(filler, "ab", buffering=0) as f:
        for size in (len(chunk), 4096, 1):
            while True:
                try:
                    if f.write(chunk[:size]) < size:
                        break
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    return filler
