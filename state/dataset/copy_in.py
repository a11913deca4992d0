"""Copy a folder of audio into the workspace as a new dataset, so labelling never writes into it.

A dataset made from a folder on this machine labels its tracks in place: every save writes a
`song.json` sidecar next to `song.wav` in that folder. A user who wants their music folder left
alone copies it in instead: the audio and any existing sidecars (same stem, `.json`) are copied
under `datasets/<name>/`, subfolders kept, and the original is only read.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from state import paths
from state.dataset.manifest import RESERVED, Dataset, create_dataset, find_audio
from state.dataset.sidecar import sidecar_path

HEADROOM = 1.1  # copies need their size plus a little room for manifests and checkpoints to come


def plan(folder: Path) -> tuple[list[Path], int]:
    """The files a copy would take (audio and their sidecars) and their total size in bytes."""
    files = []
    for audio in find_audio(Path(folder)):
        files.append(audio)
        if sidecar_path(audio).is_file():
            files.append(sidecar_path(audio))
    return files, sum(p.stat().st_size for p in files)


def copy_folder(name: str, folder: Path, progress: Callable[[int, int, str], None] | None = None) -> Dataset:
    """A new dataset `name` holding copies of `folder`'s audio and sidecars. Refuses before writing
    anything when the folder is missing or the workspace disk lacks room."""
    src = Path(folder).expanduser().resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"Folder {src} does not exist. Check the path (it must be on this machine).")
    files, size = plan(src)
    if not files:
        raise FileNotFoundError(f"{src} holds no audio files this machine can decode; nothing to copy.")
    free = shutil.disk_usage(paths.ensure(paths.root())).free
    if size * HEADROOM > free:
        raise OSError(f"Copying {src} needs {size / 2**30:.1f} GB and the workspace disk has {free / 2**30:.1f} GB "
                      "free. Free some space, or use the folder in place (labels are then written into it).")
    ds = create_dataset(name)
    for i, p in enumerate(files, start=1):
        dest = ds.dir / p.relative_to(src)
        if dest.parent == ds.dir and dest.name in RESERVED:
            continue  # a `dataset.wav`'s sidecar must not replace the dataset's own dataset.json
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest)
        if progress:
            progress(i, len(files), p.name)
    return ds
