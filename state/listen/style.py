"""Style distance: did the adapter move what the model generates toward the training data?

A measurement is one folder `lora_output/<run>/samples/style-<timestamp>/`, which is also the
`style-distance` job's folder (job.json, events.jsonl, log.txt beside the files), so the sidebar
lists it with the run's other sample jobs and deleting a run deletes its measurements:

    params.json    the request (StyleRequest), written before the job starts
    style.json     written last (atomically): one distance per source (base, checkpoints, final)

The job (trainer/listen/style.py) generates the same clips (same prompts from the run's dataset
snapshot, same seeded noise) with the base model and with each adapter, as latents only, and
measures how far each set of generated latent frames lies from the training set's latent frames
(trainer/listen/distance.py). A falling distance at later checkpoints is evidence that the adapter
learned the data, which the training loss alone cannot give. Stdlib only.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from state import jobs, paths
from state.events import EVENTS_FILE, EventTail
from state.fsutil import read_json_object, write_json
from state.listen.ab import BASE_KEY, PARAMS_FILE, adapter_sources, checked_request, samples_dir

KIND = "style-distance"
PREFIX = "style-"
RESULT_FILE = "style.json"
METRICS = ("frechet", "mmd")
MAX_CLIPS = 512  # per source: prompts x clips, each a full generation


class StyleError(ValueError):
    """A request that cannot be measured; the message names the field and the fix."""


@dataclass
class StyleRequest:
    sources: list = field(default_factory=list)  # adapter folders (final/, checkpoints/step-N/); the base is always measured
    prompts: int = 8               # dataset tracks whose labels prompt the clips (spread over the snapshot)
    clips_per_prompt: int = 4      # clips per prompt, one seed each; the same seeds for every source
    seconds: float = 10.0          # clip length
    seed: int = 0                  # clip k of prompt p starts from the noise of seed + p * clips_per_prompt + k
    steps: int = 0                 # denoising steps; 0 = the base model variant's default
    shift: float = 0.0             # 0 = the run's shift
    guidance: float = 0.0          # APG guidance; 0 = the variant's default (1 = none)
    device: str = "auto"           # auto | cpu | cuda[:N] | mps, as in the training config

    @classmethod
    def from_dict(cls, d: dict) -> "StyleRequest":
        return checked_request(cls, d, StyleError, "style-distance")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if not isinstance(self.sources, list) or not all(isinstance(s, str) and s for s in self.sources):
            raise StyleError("sources must list adapter folders (the run's final/ or checkpoints/step-N/).")
        if len(set(self.sources)) != len(self.sources):
            raise StyleError("sources lists a folder twice.")
        for name, lo, hi in (("prompts", 1, 64), ("clips_per_prompt", 1, 64), ("steps", 0, 200)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise StyleError(f"{name} must be a whole number between {lo} and {hi}, got {v!r}.")
        if self.prompts * self.clips_per_prompt > MAX_CLIPS:
            raise StyleError(f"{self.prompts} prompts x {self.clips_per_prompt} clips is over {MAX_CLIPS} "
                             "generations per source; lower one of them.")
        if not isinstance(self.seconds, (int, float)) or not 1.0 <= self.seconds <= 120.0:
            raise StyleError(f"seconds must be between 1 and 120, got {self.seconds!r}.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise StyleError(f"seed must be a whole number >= 0, got {self.seed!r}.")
        for name, hi in (("shift", 20.0), ("guidance", 30.0)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= hi:
                raise StyleError(f"{name} must be between 0 (the default) and {hi}, got {v!r}.")


# ---- sources and their steps ----------------------------------------------------------------

def source_step(source: str | Path) -> int | None:
    """The optimizer step an adapter folder was saved at: a checkpoint's meta.json, final/'s
    training_meta.json (`exported_at_step` when a stop exported it early)."""
    p = Path(source)
    meta = read_json_object(p / "meta.json")[0]
    if isinstance(meta, dict) and isinstance(meta.get("step"), int):
        return meta["step"]
    tm = read_json_object(p / "training_meta.json")[0]
    if isinstance(tm, dict):
        step = tm.get("exported_at_step", tm.get("steps"))
        return step if isinstance(step, int) else None
    return None


def default_sources(run_dir: Path) -> list[Path]:
    """What a measurement covers unless the user picks: every adapter the run offers (final/ and
    the checkpoints on disk, which include the best by validation loss)."""
    return adapter_sources(run_dir)


def best_checkpoint(run_dir: Path) -> dict | None:
    """checkpoints/best.json ({"step", "loss"}) with the folder it names, when that folder exists."""
    best = read_json_object(Path(run_dir) / "checkpoints" / "best.json")[0]
    if not isinstance(best, dict) or not isinstance(best.get("step"), int):
        return None
    folder = Path(run_dir) / "checkpoints" / f"step-{best['step']:06d}"
    return {**best, "path": str(folder)} if (folder / "meta.json").is_file() else None


# ---- measurements on disk --------------------------------------------------------------------

def start_measurement(run_dir: Path, req: StyleRequest) -> Path:
    """Write the request into a new measurement folder and launch the `style-distance` job there."""
    req.validate()
    folder = paths.unique_dir(samples_dir(run_dir), PREFIX)
    folder.mkdir(parents=True)
    write_json(folder / PARAMS_FILE, req.to_dict())
    jobs.launch(folder, KIND)
    return folder


def run_of(folder: Path) -> Path:
    """The run a measurement folder belongs to (lora_output/<run>/samples/style-…)."""
    return Path(folder).parent.parent


def list_measurements(run_dir: Path) -> list[Path]:
    """Measurement folders, newest first."""
    d = samples_dir(run_dir)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if p.is_dir() and p.name.startswith(PREFIX)), reverse=True)


def read_result(folder: Path) -> dict | None:
    """A finished measurement's style.json, or None while it runs (or when it failed)."""
    r = read_json_object(Path(folder) / RESULT_FILE)[0]
    return r if isinstance(r, dict) and isinstance(r.get("sources"), list) else None


def latest_result(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest finished measurement of the run."""
    for folder in list_measurements(run_dir):
        r = read_result(folder)
        if r is not None:
            return folder, r
    return None


def by_step(result: dict, metric: str = "frechet") -> list[dict]:
    """The result's sources as plot points, by step: {key, step, value, ratio}. The base sits at step 0
    (every run starts from it: LoRA B is zero at step 0); final/ at its exported step."""
    base = next((s for s in result["sources"] if s.get("key") == BASE_KEY), None)
    base_v = base.get(metric) if base else None
    points = []
    for s in result["sources"]:
        v = s.get(metric)
        if s.get("step") is None or not isinstance(v, (int, float)):
            continue
        ratio = v / base_v if isinstance(base_v, (int, float)) and base_v > 0 else None
        points.append({"key": s["key"], "step": s["step"], "value": v, "ratio": ratio, "source": s.get("source")})
    return sorted(points, key=lambda p: (p["step"], p["key"] != BASE_KEY, p["key"]))


def closest(result: dict, metric: str = "frechet") -> dict | None:
    """The adapter source whose clips came nearest the training data (the base never counts)."""
    cands = [p for p in by_step(result, metric) if p["key"] != BASE_KEY and p["source"]]
    return min(cands, key=lambda p: p["value"]) if cands else None


def validation_curve(run_dir: Path) -> list[dict]:
    """The run's `validation` events ({step, loss, best}), read once from its events file.

    After a resume the same step may be validated twice; the later value wins (it is the branch
    the run continued on).
    """
    tail, found = EventTail(Path(run_dir) / EVENTS_FILE), {}
    while new := tail.read_new(max_bytes=8 << 20):
        for e in new:
            if e.get("type") == "validation" and isinstance(e.get("step"), int) and isinstance(e.get("loss"), (int, float)):
                found[e["step"]] = {"step": e["step"], "loss": float(e["loss"]), "best": bool(e.get("best"))}
    return [found[s] for s in sorted(found)]


def summary_line(result: dict) -> str:
    """One sentence for the page: the adapter's distance as a share of the base's."""
    best = closest(result)
    if best is None or best["ratio"] is None:
        return "No adapter was measured."
    return (f"Closest to the training data: {best['key']} (step {best['step']}), at {best['ratio']:.2f}× the "
            f"base model's Fréchet distance ({best['value']:.3g} vs "
            f"{best['value'] / best['ratio']:.3g}); lower is closer.")


def params_of(folder: Path) -> dict:
    return read_json_object(Path(folder) / PARAMS_FILE)[0]


def dumps(result: dict) -> str:
    return json.dumps(result, indent=1, sort_keys=True)
