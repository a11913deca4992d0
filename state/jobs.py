"""Detached jobs: launch, liveness, control flags, stop, reconcile (DESIGN.md, "Job lifecycle").

A job is a folder (a run under lora_output/ or a job under jobs/) holding job.json, events.jsonl,
log.txt and control/. The launching process may exit at any time: everything the dashboard needs
to know about a job is derived from those files plus a liveness check of the recorded pid.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import psutil

from state import events as ev
from state import paths
from state.fsutil import disk_full_message, has_room, note_write_failure, read_json_object, write_json

JOB_FILE = "job.json"
LOG_FILE = "log.txt"
CONTROL = "control"
READY_FLAG = "ready"  # written by the job once its signal handlers are installed
FLAGS = ("stop", "save_now", "sample_now")
TERMINAL = ("completed", "stopped", "failed", "died", "damaged")
RUN_PY = Path(__file__).resolve().parent.parent / "trainer" / "run.py"


@dataclass
class JobStatus:
    job_dir: Path
    kind: str
    status: str  # queued | running | completed | stopped | failed | died | unknown
    pid: int | None
    started_at: float | None
    ended_at: float | None
    last_event: dict | None
    detail: str = ""  # for died/failed/damaged: what we know (last event, last log lines, bad file)

    @property
    def job_id(self) -> str:
        return self.job_dir.name

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


# job.json fields readers rely on, with the types a damaged file is checked against
_INFO_TYPES = {"kind": (str,), "pid": (int, type(None)), "create_time": (int, float, type(None)),
               "started_at": (int, float, type(None)), "launches": (int,), "events_offset": (int,)}


def read_info(job_dir: Path) -> tuple[dict, str | None]:
    """job.json and, when it is damaged, why (the dict is then {}, so every reader goes on)."""
    path = Path(job_dir) / JOB_FILE
    info, problem = read_json_object(path)
    if problem:
        return {}, problem
    for key, types in _INFO_TYPES.items():
        if key in info and (not isinstance(info[key], types) or isinstance(info[key], bool)):
            return {}, f"{path} is damaged ({key} is {info[key]!r:.60}, not a {types[0].__name__})"
    return info, None


def job_info(job_dir: Path) -> dict:
    return read_info(job_dir)[0]


def events_size(job_dir: Path) -> int:
    try:
        return os.path.getsize(Path(job_dir) / ev.EVENTS_FILE)
    except OSError:
        return 0


def launch(job_dir: Path, kind: str, extra_args: Iterable[str] = (), python: str | None = None,
           env: dict | None = None) -> dict:
    """Start `trainer/run.py <kind> --job-dir <job_dir>` detached from this process.

    The child gets its own session (so closing the dashboard, or a signal to its process group,
    never reaches it) and writes stdout+stderr to log.txt. job.json is written before the child
    starts and then updated with its pid and create_time, which together identify the process.
    """
    job_dir = Path(job_dir)
    (job_dir / CONTROL).mkdir(parents=True, exist_ok=True)
    for flag in FLAGS + (READY_FLAG,):
        (job_dir / CONTROL / flag).unlink(missing_ok=True)
    argv = [python or sys.executable, "-u", str(RUN_PY), kind, "--job-dir", str(job_dir), *extra_args]
    info = {
        "kind": kind,
        "argv": argv,
        "pid": None,
        "create_time": None,
        "started_at": time.time(),
        "host": socket.gethostname(),
        "launches": job_info(job_dir).get("launches", 0) + 1,
        # events before this byte belong to earlier launches: an `end` there is not this launch's
        "events_offset": events_size(job_dir),
    }
    write_json(job_dir / JOB_FILE, info)
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    with open(job_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(paths.root()), env=child_env, start_new_session=True, close_fds=True,
        )
    info["pid"] = proc.pid
    try:
        info["create_time"] = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        pass  # exited already; reconcile will read its events
    write_json(job_dir / JOB_FILE, info)
    _forget(proc)
    return info


def register_self(job_dir: Path, kind: str, argv: list[str]) -> None:
    """Called by a job at start: a job started without the dashboard (headless, on a batch box)
    writes its own job.json, so it is listed, watched and reconciled like any other.

    A job.json left by a dashboard launch is kept (the launcher fills in pid and create_time).
    Either way, control flags written before this start (a stop meant for the last launch) are
    cleared here, so whoever starts a job, it never obeys a stale flag.
    """
    info = job_info(job_dir)
    launched_for_us = info and (info.get("pid") in (None, os.getpid()))
    if launched_for_us or (info and process_of(job_dir) is not None):
        clear_stale_flags(job_dir, info.get("started_at") or psutil.Process().create_time())
        return
    me = psutil.Process()
    write_json(Path(job_dir) / JOB_FILE, {
        "kind": kind, "argv": argv, "pid": me.pid, "create_time": me.create_time(), "started_at": time.time(),
        "host": socket.gethostname(), "launches": info.get("launches", 0) + 1 if info else 1, "headless": True,
        "events_offset": events_size(job_dir),
    })
    clear_stale_flags(job_dir, me.create_time())


def clear_stale_flags(job_dir: Path, since: float) -> list[str]:
    """Remove control flags (and the ready mark) older than `since`; returns the flags removed.

    A flag is stale when it was written before this launch started; one written after (a stop
    clicked while the job was still starting) is kept and obeyed.
    """
    removed = []
    for flag in FLAGS + (READY_FLAG,):
        f = Path(job_dir) / CONTROL / flag
        try:
            if f.stat().st_mtime < since - 0.05:
                f.unlink()
                removed.append(flag)
        except FileNotFoundError:
            pass
    return removed


def _forget(proc: subprocess.Popen) -> None:
    # We never wait() on detached jobs; reap them in a thread so they do not linger as zombies
    # while the dashboard lives (after it exits, init adopts them).
    import threading
    threading.Thread(target=proc.wait, daemon=True).start()


def process_of(job_dir: Path, info: dict | None = None) -> psutil.Process | None:
    """The job's live process, or None if it is gone, a zombie, or the pid was reused."""
    info = job_info(job_dir) if info is None else info
    return live_process(info.get("pid"), info.get("create_time"))


def live_process(pid: int | None, ctime: float | None) -> psutil.Process | None:
    """The process `pid` if it is alive, not a zombie, and (when known) was created at `ctime`."""
    if not pid:
        return None
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        if ctime is not None and abs(p.create_time() - ctime) > 1.0:
            return None
        return p
    except psutil.Error:
        return None


def is_alive(job_dir: Path) -> bool:
    return process_of(job_dir) is not None


def request(job_dir: Path, flag: str) -> None:
    if flag not in FLAGS:
        raise ValueError(f"unknown control flag {flag!r}; expected one of {FLAGS}")
    d = Path(job_dir) / CONTROL
    d.mkdir(parents=True, exist_ok=True)
    try:
        (d / flag).write_text(str(time.time()))
    except OSError:
        if not (d / flag).exists():  # on a full disk the empty file is still the flag: Stop works
            raise


def flag_set(job_dir: Path, flag: str) -> bool:
    return (Path(job_dir) / CONTROL / flag).exists()


def clear_flag(job_dir: Path, flag: str) -> None:
    (Path(job_dir) / CONTROL / flag).unlink(missing_ok=True)


def mark_ready(job_dir: Path) -> None:
    d = Path(job_dir) / CONTROL
    d.mkdir(parents=True, exist_ok=True)
    (d / READY_FLAG).write_text(str(os.getpid()))


def is_ready(job_dir: Path) -> bool:
    return (Path(job_dir) / CONTROL / READY_FLAG).exists()


def stop(job_dir: Path, wait_s: float = 0.0, force: bool = False) -> str:
    """Ask a job to stop and save. Returns what happened, in words.

    The flag is always written. SIGTERM is sent only once the job has signalled ready (before
    that its handlers are not installed and SIGTERM would kill it without a checkpoint). With
    wait_s > 0 this waits for the process to exit; `force` escalates to SIGKILL after that.
    """
    request(job_dir, "stop")
    p = process_of(job_dir)
    if p is None:
        return "not running"
    if is_ready(job_dir):
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            return "not running"
    if wait_s <= 0:
        return "stop requested: the job saves a checkpoint and exits after the current step"
    try:
        p.wait(timeout=wait_s)
        return "stopped"
    except psutil.TimeoutExpired:
        return kill(job_dir) if force else "stop requested: still saving"
    except psutil.Error:
        return "stopped"


def kill(job_dir: Path) -> str:
    p = process_of(job_dir)
    if p is None:
        return "not running"
    try:
        p.kill()
        p.wait(timeout=10)
    except psutil.Error:
        pass
    return "killed"


def _tail_lines(path: Path, n: int = 20, max_bytes: int = 16384) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-n:]


def log_tail(job_dir: Path, n: int = 20) -> list[str]:
    return _tail_lines(Path(job_dir) / LOG_FILE, n)


# Library notices a user cannot act on. They stay in log.txt; the dashboard's log view leaves them out.
_LIB_WARNING = re.compile(r"(?:/[\w.+-]+)+/site-packages/\S+:\d+: (?:FutureWarning|DeprecationWarning|SyntaxWarning): .*")
_NOISE = (
    re.compile(r"Failed to load CPU gemm_4bit_forward"),  # bitsandbytes: an optional CPU kernel (`kernels`)
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def log_view(job_dir: Path, n: int = 30, max_bytes: int = 65536) -> tuple[list[str], int]:
    """The log's last `n` lines as a person reads them, and how many library notices were left out.

    A progress bar rewrites its line with carriage returns: only its last state is kept. A Python
    warning from a library (a deprecation inside torch or diffusers) and the source line it echoes
    are left out, as are known notices about optional kernels. log.txt itself keeps everything.
    """
    try:
        with open(Path(job_dir) / LOG_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return [], 0
    out, hidden, echo = [], 0, False
    for raw in text.split("\n"):
        line = _ANSI.sub("", raw)
        if echo and line[:1] in (" ", "\t") and line.strip():
            echo = False
            continue  # the source line Python prints under a warning
        line, echo = _LIB_WARNING.subn("", line)
        hidden += echo
        line = next((seg for seg in reversed(line.split("\r")) if seg.strip()), "").rstrip()
        if any(p.search(line) for p in _NOISE):
            hidden += 1
        elif line or not echo:
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return out[-n:], hidden


def status(job_dir: Path) -> JobStatus:
    """Derive a job's status from its files and process, without changing anything."""
    job_dir = Path(job_dir)
    info, damaged = read_info(job_dir)
    if damaged:
        return JobStatus(job_dir, "unknown", "damaged", None, None, None, None,
                         f"{damaged}. Its other files are untouched; delete the folder if it is of no use, "
                         "or restore job.json from a backup.")
    events_path = job_dir / ev.EVENTS_FILE
    offset = info.get("events_offset")
    # Only this launch's events count: an `end` from the launch before is not this launch's end.
    last = ev.last_event(events_path, since=offset or 0)
    end = last if last and last.get("type") == "end" else None  # `end` is always a job's last write
    kind = info.get("kind", "unknown")
    started = info.get("started_at")
    if end is not None and (offset is not None or _num(end.get("t")) >= (started or 0) - 1):
        return JobStatus(job_dir, kind, str(end.get("status", "completed")), info.get("pid"),
                         started, _num(end.get("t")) or None, last, _end_detail(end))
    if not info:
        return JobStatus(job_dir, kind, "unknown", None, None, None, last)
    if offset is None and last is not None and _num(last.get("t")) < (started or 0) - 1:
        last = None  # an old job.json without the offset: an event older than the launch is not its
    if process_of(job_dir, info) is not None:
        queued = last is not None and last.get("type") == "queued"
        return JobStatus(job_dir, kind, "queued" if queued else "running", info.get("pid"),
                         started, None, last)
    if info.get("pid") is None:
        return JobStatus(job_dir, kind, "running", None, started, None, last, "starting")
    return JobStatus(job_dir, kind, "died", info.get("pid"), started, None, last,
                     _died_detail(job_dir, last))


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _end_detail(end: dict) -> str:
    # reconcile wrote the reason a job died into its `end` once; every later reader shows it
    msg = end.get("message")
    return msg if isinstance(msg, str) else ""


def _died_detail(job_dir: Path, last: dict | None) -> str:
    parts = ["The job's process is gone without saying it finished (killed, crashed, or the machine restarted)."]
    if not has_room(job_dir):
        parts.append(f"The disk is full ({disk_full_message(job_dir)}): that is the likely reason. "
                     "Free space, then resume.")
    if last:
        shown = {k: v for k, v in last.items() if k not in ("t", "type")}
        parts.append(f"Last event: {last.get('type')} {str(shown)[:400]}")
    else:
        parts.append("It wrote no event in this launch (it was stopped or crashed while starting).")
    lines = log_tail(job_dir, 8)
    if lines:
        parts.append("Last log lines:\n" + "\n".join(lines))
    return "\n".join(parts)


def reconcile(job_dir: Path) -> JobStatus:
    """Status, and if the job died, record that (with the reason) as its `end` event, once, so every
    reader agrees and sees why. Reading never depends on that write: a full disk or a read-only
    folder leaves the status derived and the failure noted for the dashboard to show once."""
    st = status(job_dir)
    if st.status == "died" and st.ended_at is None:  # derived now, not read from an earlier `end`
        try:
            with ev.EventWriter(job_dir) as w, w.exclusive():
                if status(job_dir).ended_at is None:  # another reader may have just written it
                    w.emit("end", status="died", message=st.detail,
                           elapsed_s=(time.time() - st.started_at) if st.started_at else None)
        except OSError as exc:
            note_write_failure(Path(job_dir) / ev.EVENTS_FILE, exc)
        st.ended_at = time.time()
    return st


def list_jobs(*roots: Path) -> list[Path]:
    """Job folders under the given roots; by default every kind: runs, jobs/, and the A/B and
    preview jobs that live inside a run's samples/ folder."""
    if not roots:
        runs = [d for d in paths.runs_dir().iterdir() if d.is_dir()] if paths.runs_dir().is_dir() else []
        roots = (paths.runs_dir(), paths.jobs_dir(), *(r / "samples" for r in runs),
                 *(r / "samples" / "jobs" for r in runs))
    out = []
    for r in roots:
        if r.is_dir():
            out.extend(d for d in r.iterdir() if d.is_dir() and (d / JOB_FILE).exists())
    return sorted(out, key=lambda d: job_info(d).get("started_at", 0), reverse=True)


def active_jobs() -> list[JobStatus]:
    return [s for s in (reconcile(d) for d in list_jobs()) if s.active]
