"""Notice files changing on disk without rescanning: a watchdog observer per folder.

The dashboard keeps one `FolderWatch` per watched folder (st.cache_resource) and compares its
`generation` with the one it last rendered; the OS tells us about new audio, edited sidecars or
a growing events file, so an idle page does no filesystem work at all.
"""
from __future__ import annotations

import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


class FolderWatch(FileSystemEventHandler):
    def __init__(self, folder: Path, suffixes: tuple[str, ...] | None = None, recursive: bool = True):
        self.folder = Path(folder)
        self.suffixes = tuple(s.lower() for s in suffixes) if suffixes else None
        self.generation = 0
        self.changed: set[str] = set()
        self._lock = threading.Lock()
        self._observer = Observer()
        self._observer.daemon = True
        self.folder.mkdir(parents=True, exist_ok=True)
        self._observer.schedule(self, str(self.folder), recursive=recursive)
        self._observer.start()

    def _relevant(self, path: str) -> bool:
        name = Path(path).name
        if name.startswith(".") or name.endswith((".tmp", ".lock")):
            return False  # our own atomic-write temp files and locks
        return self.suffixes is None or name.lower().endswith(self.suffixes)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        candidates = [event.src_path, getattr(event, "dest_path", "") or ""]
        hits = [p for p in candidates if p and self._relevant(str(p))]
        if hits:
            with self._lock:
                self.generation += 1
                self.changed.update(str(p) for p in hits)

    def take_changes(self) -> set[str]:
        with self._lock:
            out, self.changed = self.changed, set()
        return out

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=2)

    @property
    def alive(self) -> bool:
        return self._observer.is_alive()
