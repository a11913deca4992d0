"""A/B comparisons: the request, what a run offers to compare, the folders on disk, the blind mapping.

A comparison is one folder `lora_output/<run>/samples/ab-<timestamp>/`. It is also the `ab` job's
folder (job.json, events.jsonl, log.txt, control/ sit beside the audio), so a comparison carries
its own progress, log and result, and deleting a run deletes its comparisons:

    params.json                      the request (ABRequest), written before the job starts
    <comparison>_<output>.wav        48 kHz stereo, loudness-matched across the comparison
    meta.json                        written last (atomically): outputs, loudness, the blind mapping

Votes are state/listen/votes.py, training previews state/listen/previews.py, and pictures of the
audio ui/audio_pictures.py. Imports no torch and no Streamlit: the page and the jobs both use it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from state import jobs, paths
from state.fsutil import read_json_object, write_json
from state.model.catalog import info_for

SAMPLES = "samples"
META_FILE = "meta.json"
PARAMS_FILE = "params.json"
PREFIX = "ab-"
MODES = ("base-vs-adapter", "checkpoint-vs-checkpoint")
PROMPT_FIELDS = ("caption", "lyrics", "bpm", "keyscale", "timesignature", "vocal_language", "duration")
BASE_KEY = "base"
MAX_OUTPUTS = 8           # one comparison renders at most this many clips (each costs a full generation)


class ABError(ValueError):
    """A request or vote that cannot be used; the message names the field and the fix."""


# ---- the request ----------------------------------------------------------------------------

def checked_request(cls, d: dict, error: type[Exception], what: str):
    """`cls(**d)`, validated; an unknown field is named with the known ones (A/B and style requests)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise error(f"Unknown {what} field {unknown[0]!r}; known fields: {', '.join(sorted(names))}.")
    req = cls(**d)
    req.validate()
    return req


@dataclass
class ABRequest:
    run_id: str = ""                 # the run whose adapters are compared
    mode: str = MODES[0]             # base-vs-adapter (one source) | checkpoint-vs-checkpoint (two or more)
    sources: list = field(default_factory=list)   # adapter folders: the run's final/ or checkpoints/step-N/
    prompt: dict = field(default_factory=dict)    # PROMPT_FIELDS; `duration` is the clip length in seconds
    seed: int = 0                    # one seed -> one initial noise, shared by every output
    steps: int = 50                  # num_inference_steps
    shift: float = 3.0               # timestep shift
    guidance: float = 7.0            # APG guidance scale (1.0 = none)
    scales: list = field(default_factory=lambda: [0.0, 1.0])  # LoRA scales; 0 = the base model
    device: str = "auto"             # auto | cpu | cuda[:N] | mps, as in the training config

    @classmethod
    def from_dict(cls, d: dict) -> "ABRequest":
        return checked_request(cls, d, ABError, "A/B request")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ABError(f"mode must be one of {list(MODES)}, got {self.mode!r}.")
        if not self.sources:
            raise ABError("sources is empty: pick the run's final adapter or a checkpoint.")
        if self.mode == MODES[0] and len(self.sources) != 1:
            raise ABError("base-vs-adapter compares the base with exactly one adapter source; "
                          "use checkpoint-vs-checkpoint for several.")
        if self.mode == MODES[1] and len(set(self.sources)) < 2:
            raise ABError("checkpoint-vs-checkpoint needs at least two different adapter sources.")
        if not str(self.prompt.get("caption", "")).strip():
            raise ABError("The caption is empty: describe the music to generate (e.g. “warm lofi hip hop, "
                          "dusty drums”), or pick a dataset track as the prompt.")
        bad = sorted(set(self.prompt) - set(PROMPT_FIELDS))
        if bad:
            raise ABError(f"prompt has unknown field {bad[0]!r}; allowed: {', '.join(PROMPT_FIELDS)}.")
        dur = self.prompt.get("duration", 10.0)
        if not isinstance(dur, (int, float)) or not 1.0 <= float(dur) <= 600.0:
            raise ABError(f"prompt.duration must be between 1 and 600 seconds, got {dur!r}.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ABError(f"seed must be a whole number >= 0, got {self.seed!r}.")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 200:
            raise ABError(f"steps must be between 1 and 200, got {self.steps!r}.")
        if not self.shift > 0:
            raise ABError(f"shift must be greater than 0, got {self.shift!r}.")
        if not 1.0 <= self.guidance <= 30.0:
            raise ABError(f"guidance must be between 1.0 (none) and 30, got {self.guidance!r}.")
        if not self.scales or any(not isinstance(s, (int, float)) or not math.isfinite(s) or not -4 <= s <= 4
                                  for s in self.scales):
            raise ABError(f"scales must list LoRA scales between -4 and 4 (e.g. [0, 1.0]), got {self.scales!r}.")
        if len(plan_outputs(self)) > MAX_OUTPUTS:
            raise ABError(f"This request renders {len(plan_outputs(self))} clips; at most {MAX_OUTPUTS} per "
                          "comparison. Use fewer scales or sources.")


def source_name(source: str | Path) -> str:
    """`final` or the checkpoint folder's name (`step-000040`): short, and what the user picked."""
    return Path(source).name


def output_label(name: str, scale: float) -> str:
    """'Final adapter' / 'Checkpoint at step 40', with its strength when it is not the full 1."""
    what = "Final adapter" if name == "final" else (f"Checkpoint at step {int(name[5:])}"
                                                    if re.fullmatch(r"step-\d+", name) else f"Adapter {name}")
    return what if scale == 1.0 else f"{what} at strength {scale:g}"


def plan_outputs(req: ABRequest) -> list[dict]:
    """What one comparison renders, in order: the base (adapter disabled), then each source at each scale.

    The base is included in base-vs-adapter mode, and in checkpoint mode when a scale is 0 (which
    is the base: scale 0 switches every LoRA layer off). Scale 0 never renders an adapter twice.
    """
    scales = list(dict.fromkeys(float(s) for s in req.scales))
    out = []
    if req.mode == MODES[0] or 0.0 in scales:
        out.append({"key": BASE_KEY, "label": "Base model (adapter off)", "source": None, "scale": 0.0})
    for src in dict.fromkeys(req.sources):
        for s in scales:
            if s != 0.0:
                name = source_name(src)
                out.append({"key": f"{name}@{s:g}", "label": output_label(name, s), "source": str(src), "scale": s})
    return out


def parse_scales(text: str) -> list[float]:
    """'0, 1.0, 0.5' -> [0.0, 1.0, 0.5]; the error names the piece that is not a number."""
    out = []
    for part in re.split(r"[,\s;]+", text.strip()):
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise ABError(f"LoRA scale {part!r} is not a number; write them like 0, 1.0, 0.5.") from None
    if not out:
        raise ABError("No LoRA scales given; write them like 0, 1.0.")
    return out


# ---- what a run offers ----------------------------------------------------------------------

def adapter_sources(run_dir: Path) -> list[Path]:
    """The run's final/ (if exported) first, then its checkpoints newest first."""
    run_dir = Path(run_dir)
    out = [run_dir / "final"] if (run_dir / "final" / "pytorch_lora_weights.safetensors").is_file() else []
    ck = run_dir / "checkpoints"
    if ck.is_dir():
        out += sorted((p for p in ck.iterdir() if p.name.startswith("step-") and (p / "meta.json").is_file()),
                      reverse=True)
    return out


def default_settings(run_dir: Path) -> dict:
    """steps / shift / guidance for generating with this run's adapter, from the base model's variant.

    final/training_meta.json recorded them at export; before that, the run's config names the
    model (whose variant gives steps and guidance) and the shift it was trained for.
    """
    run_dir = Path(run_dir)
    meta = read_json_object(run_dir / "final" / "training_meta.json")[0]
    cfg = read_json_object(run_dir / "config.json")[0]
    info = info_for(cfg.get("model_id") or meta.get("base_model_id") or "")
    return {"steps": int(meta.get("recommended_steps") or info.steps),
            "shift": float(meta.get("shift") or cfg.get("shift") or info.shift),
            "guidance": float(meta.get("recommended_guidance") or info.guidance),
            "model_id": cfg.get("model_id") or meta.get("base_model_id"), "device": cfg.get("device", "auto")}


def dataset_tracks(run_dir: Path) -> list[dict]:
    """The rows the run trained on (its dataset.jsonl snapshot), for prefilling a prompt."""
    rows = []
    try:
        with open(Path(run_dir) / "dataset.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
    except FileNotFoundError:
        pass
    return rows


def prompt_from_track(row: dict, seconds: float | None = None) -> dict:
    """A track's labels as a generation prompt; the clip length defaults to the track's, capped at 30 s."""
    p = {k: row.get(k) for k in PROMPT_FIELDS if row.get(k) not in (None, "")}
    dur = seconds if seconds is not None else min(float(row.get("duration") or row.get("seconds") or 10.0), 30.0)
    p["duration"] = float(max(1.0, dur))
    p.setdefault("caption", "")
    return p


# ---- comparisons on disk --------------------------------------------------------------------

def samples_dir(run_dir: Path) -> Path:
    return Path(run_dir) / SAMPLES


def new_comparison_id(run_dir: Path) -> str:
    return paths.unique_dir(samples_dir(run_dir), PREFIX).name


def start_comparison(run_dir: Path, req: ABRequest) -> Path:
    """Write the request into a new comparison folder and launch the `ab` job there."""
    req.validate()
    comp = samples_dir(run_dir) / new_comparison_id(run_dir)
    comp.mkdir(parents=True)
    write_json(comp / PARAMS_FILE, req.to_dict())
    jobs.launch(comp, "ab")
    return comp


def list_comparisons(run_dir: Path) -> list[Path]:
    """Comparison folders, newest first."""
    d = samples_dir(run_dir)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if p.is_dir() and p.name.startswith(PREFIX)), reverse=True)


def read_meta(comp_dir: Path) -> dict | None:
    """The finished comparison's meta.json, or None while it is being generated (or failed)."""
    meta, _damaged = read_json_object(Path(comp_dir) / META_FILE)  # a damaged one reads as unfinished
    return meta or None


def output_path(comp_dir: Path, key: str) -> Path:
    """`ab-…_base.wav`, `ab-…_final@1.wav`: unique names, so a flattened folder (the Hub) keeps them apart."""
    safe = re.sub(r"[^A-Za-z0-9.@_-]", "_", key)
    return Path(comp_dir) / f"{Path(comp_dir).name}_{safe}.wav"


def assign_blind(keys: list[str]) -> dict[str, str]:
    """A random mapping of letters to outputs ({"A": key, "B": key, ...}), drawn from the OS's RNG.

    Not from the generation seed: a listener who knows the seed must not be able to work it out.
    """
    shuffled = list(keys)
    for i in range(len(shuffled) - 1, 0, -1):  # Fisher-Yates with a cryptographic source
        j = secrets.randbelow(i + 1)
        shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    return dict(zip(string.ascii_uppercase, shuffled))


def blind_order(meta: dict) -> list[tuple[str, dict]]:
    """(letter, output) pairs in letter order, for the blind view."""
    by_key = {o["key"]: o for o in meta.get("outputs", [])}
    return [(letter, by_key[k]) for letter, k in sorted(meta.get("blind", {}).items()) if k in by_key]


def reveal(meta: dict) -> dict[str, str]:
    """Letter -> the output's real label."""
    return {letter: o["label"] for letter, o in blind_order(meta)}
