"""Known ACE-Step 1.5 models and their inference defaults. Stdlib only: the dashboard imports it.

The model id is a setting (ACESTEP.md §1); this table only pre-fills choices and defaults. Any
Hub id or local diffusers folder still works, with its variant guessed from the name or config.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

DEMO_MODEL_ID = "acelora/tiny-demo"  # not a Hub repo: resolved to <workspace>/models/acelora-tiny-demo


@dataclass(frozen=True)
class ModelInfo:
    model_id: str        # Hub repo id (or DEMO_MODEL_ID)
    variant: str         # base | sft | turbo
    size: str            # 2B | XL | tiny
    steps: int           # default num_inference_steps
    shift: float         # timestep shift for sampling; stored with adapters, not used by the loss
    guidance: float      # APG guidance scale; 1.0 = none (turbo has guidance distilled in)
    note: str = ""       # one line for the model picker

    def to_dict(self) -> dict:
        return asdict(self)


# base/sft: 30-50 steps work; 50 is the quality default. turbo: 8 fixed steps, no guidance.
INFERENCE_DEFAULTS = {
    "turbo": {"steps": 8, "shift": 3.0, "guidance": 1.0},
    "base": {"steps": 50, "shift": 3.0, "guidance": 7.0},
    "sft": {"steps": 50, "shift": 3.0, "guidance": 7.0},
}
STEP_RANGE = {"turbo": (8, 8), "base": (30, 50), "sft": (30, 50)}


def _info(model_id: str, variant: str, size: str, note: str) -> ModelInfo:
    d = INFERENCE_DEFAULTS[variant]
    return ModelInfo(model_id, variant, size, d["steps"], d["shift"], d["guidance"], note)


KNOWN_MODELS: dict[str, ModelInfo] = {m.model_id: m for m in [
    _info("Runware/acestep-v15-base-diffusers", "base", "2B",
          "2B base (mirror): the most plastic variant for LoRA; fits a 24 GB GPU"),
    _info("ACE-Step/acestep-v15-xl-base-diffusers", "base", "XL",
          "XL base: best quality, needs a large GPU"),
    _info("ACE-Step/acestep-v15-xl-turbo-diffusers", "turbo", "XL",
          "XL turbo: 8-step distilled; fast previews, less plastic for LoRA"),
    _info(DEMO_MODEL_ID, "base", "tiny",
          "Tiny random-weights demo built offline: produces noise, not music"),
]}


def known_ids() -> list[str]:
    return list(KNOWN_MODELS)


def info_for(model_id_or_path: str) -> ModelInfo:
    """The table entry, or an entry guessed from the name/config for an unknown id or folder."""
    key = str(model_id_or_path)
    if key in KNOWN_MODELS:
        return KNOWN_MODELS[key]
    variant = variant_of(key)
    return _info(key, variant, _size_of(key), "")


def variant_of(model_id_or_path: str) -> str:
    """base | sft | turbo. A local folder's transformer config wins over its name."""
    key = str(model_id_or_path)
    if key in KNOWN_MODELS:
        return KNOWN_MODELS[key].variant
    from_config = _variant_from_config(Path(key))
    if from_config:
        return from_config
    low = key.lower()
    for v in ("turbo", "sft", "base"):
        if v in low:
            return v
    return "base"  # an unknown checkpoint gets the safe settings: guidance on, more steps


def _variant_from_config(folder: Path) -> str | None:
    try:
        cfg = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if cfg.get("is_turbo") or cfg.get("model_version") == "turbo":
        return "turbo"
    if cfg.get("model_version") in ("base", "sft"):
        return cfg["model_version"]
    return None


def _size_of(key: str) -> str:
    low = key.lower()
    if "xl" in low:
        return "XL"
    if "demo" in low or "tiny" in low:
        return "tiny"
    return "2B"


def local_dir_name(repo_id: str) -> str:
    """The folder under <workspace>/models/ a Hub repo is downloaded to: 'org/name' -> 'org--name'."""
    return repo_id.strip().strip("/").replace("/", "--")
