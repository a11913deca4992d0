"""Training runs under lora_output/: summaries for the Runs page, start/resume/delete, downloads."""
from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from state import jobs, paths
from state.events import EVENTS_FILE, EventTail
from state.fsutil import read_json_object, write_json
from state.series import RunSeries, follow, timing

CONFIG = "config.json"
DATASET_SNAPSHOT = "dataset.jsonl"


@dataclass
class RunSummary:
    run_id: str
    dir: Path
    status: str
    model_id: str | None
    dataset_size: int
    steps: int
    total_steps: int | None
    last_loss: float | None
    best_loss: float | None
    duration_s: float | None
    created: float | None
    detail: str = ""
    damaged: str = ""  # which file is damaged and why; the run is listed, never a crash

    def row(self) -> dict:
        return {"run": self.run_id, "status": self.status, "model": self.model_id, "tracks": self.dataset_size,
                "steps": self.steps, "of": self.total_steps, "last loss": self.last_loss,
                "best loss": self.best_loss, "duration (min)": round(self.duration_s / 60, 1)
                if self.duration_s else None,
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created)) if self.created else None}


def list_runs() -> list[Path]:
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    return sorted((d for d in root.iterdir() if d.is_dir() and (d / jobs.JOB_FILE).exists()),
                  key=lambda d: jobs.job_info(d).get("started_at", 0), reverse=True)


def load_series(run_dir: Path) -> RunSeries:
    s = RunSeries()
    follow(EventTail(Path(run_dir) / EVENTS_FILE), s)
    return s


def summarize(run_dir: Path, series: RunSeries | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    st = jobs.reconcile(run_dir)
    s = series or load_series(run_dir)
    cfg, cfg_damaged = read_config(run_dir)
    info = jobs.job_info(run_dir)
    # the same working time the live view shows: queue wait left out, resumes summed
    worked = timing(s, st.started_at, time.time(), st.active, queues="--after" in (info.get("argv") or []))
    damaged = "\n".join(p for p in (st.detail if st.status == "damaged" else "", cfg_damaged) if p)
    model = cfg.get("model_id")
    total = (s.start or {}).get("total_steps")
    return RunSummary(
        run_id=run_dir.name, dir=run_dir, status="damaged" if damaged else st.status,
        model_id=str(model) if model is not None else None,
        dataset_size=_count_lines(run_dir / DATASET_SNAPSHOT),
        steps=int(_num(s.last_step.get("step"))) if s.last_step else 0,
        total_steps=int(total) if isinstance(total, (int, float)) and not isinstance(total, bool) else None,
        last_loss=s.last_loss, best_loss=s.best_loss,
        duration_s=worked.run_s if (s.launches or st.active) else None, created=info.get("started_at"),
        detail=st.detail, damaged=damaged,
    )


def summary_or_damaged(run_dir: Path) -> RunSummary:
    """summarize, or, when something in the folder is damaged past what it checks, a row that says
    so: one broken run never takes the list of all runs down with it."""
    try:
        return summarize(run_dir)
    except Exception as exc:  # noqa: BLE001 - whatever it is, it is listed with its reason
        reason = f"{Path(run_dir).name} could not be read ({type(exc).__name__}: {str(exc)[:200]})"
        return RunSummary(Path(run_dir).name, Path(run_dir), "damaged", None, 0, 0, None, None, None, None,
                          None, reason, reason)


def read_config(run_dir: Path) -> tuple[dict, str]:
    """config.json, and a sentence when it is damaged ('' when fine or missing)."""
    cfg, problem = read_json_object(Path(run_dir) / CONFIG)
    return cfg, (f"{problem}. The run's other files are untouched: fix or restore config.json to resume it."
                 if problem else "")


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _count_lines(p: Path) -> int:
    try:
        with open(p, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def checkpoints(run_dir: Path) -> list[Path]:
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_dir() and p.name.startswith("step-"))


def new_run_id(prefix: str = "run") -> str:
    return paths.unique_dir(paths.runs_dir(), f"{prefix}-").name


def start_run(config: dict, manifest_rows: list[dict], run_id: str | None = None, after: str | None = None,
              resume: str | None = None) -> Path:
    """Write config.json and the dataset snapshot, then launch the training job detached."""
    run_dir = paths.run_dir(run_id or new_run_id())
    run_dir.mkdir(parents=True, exist_ok=resume is not None)
    snapshot = run_dir / DATASET_SNAPSHOT
    if resume is None:
        snapshot.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in manifest_rows),
                            encoding="utf-8")
        write_json(run_dir / CONFIG, {**config, "manifest": str(snapshot)})
    extra = []
    if after:
        extra += ["--after", paths.check_name(after, "run id")]
    if resume:
        extra += ["--resume", resume]
    jobs.launch(run_dir, "train", extra)
    return run_dir


def zip_dir(folder: Path) -> bytes:
    """The folder as a zip in memory (adapters are tens of MB; fine for a download button)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(Path(folder).parent))
    return buf.getvalue()


def delete_run(run_dir: Path) -> None:
    run_dir = Path(run_dir)
    if jobs.is_alive(run_dir):
        raise RuntimeError(f"{run_dir.name} is still running: stop it first.")
    if run_dir.parent.resolve() != paths.runs_dir().resolve():
        raise ValueError(f"{run_dir} is not a run folder")
    shutil.rmtree(run_dir)


DIFF_SKIP = ("manifest",)  # the run's own dataset snapshot path: different for every run, says nothing


def config_diff(configs: dict[str, dict]) -> list[dict]:
    """Rows of settings that differ between runs (run id -> config), values as text: one table
    column holds numbers, names and lists, which a typed table cannot."""
    keys = sorted({k for c in configs.values() for k in c} - set(DIFF_SKIP))
    rows = []
    for k in keys:
        vals = {rid: c.get(k) for rid, c in configs.items()}
        if len({json.dumps(v, sort_keys=True) for v in vals.values()}) > 1:
            rows.append({"setting": k, **{rid: v if isinstance(v, str) else "–" if v is None else json.dumps(v)
                                          for rid, v in vals.items()}})
    return rows
