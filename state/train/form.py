"""The Train page's settings as data: which config fields the form edits, their defaults for a model
and preset, a past run's settings to start from, and the last settings used with each dataset.

The last settings live in `datasets/<name>/.train_settings.json` (a dotfile, so scans, sidecar checks
and the folder watcher pass it by). Whatever is read back is checked field by field against
TrainConfig: a hand-edited or outdated file loses only the values that no longer fit.
"""
from __future__ import annotations

import time

from state import paths
from state.fsutil import read_json, write_json
from state.model.catalog import info_for
from state.train.config import ConfigError, TrainConfig
from state.train.preflight import PRESETS

SAVED_FILE = ".train_settings.json"
DEFAULT_PRESET = "Defaults"
# TrainConfig fields the form edits; model_id is chosen beside them and saved with them
FORM_FIELDS = ("max_steps", "epochs", "learning_rate", "clip_seconds", "rank", "alpha", "batch_size", "grad_accum",
               "optimizer", "scheduler", "warmup_ratio", "max_grad_norm", "dropout", "cond_dropout", "seed", "shift",
               "checkpoint_every", "keep_last", "gradient_checkpointing", "timestep_sampling", "target_modules",
               "sample_every", "sample_seed", "sample_seconds", "sample_prompt",
               "val_every", "val_share", "early_stop_patience", "ema_decay", "attention_backend", "compile",
               "report_to", "adapter_type", "merged_scale", "base_quant")


def preset_names() -> list[str]:
    return [DEFAULT_PRESET, *PRESETS]


def defaults(model: str, preset: str = DEFAULT_PRESET) -> dict:
    """The config's defaults with the preset's overrides, and the timestep sampling the model's variant wants."""
    base = TrainConfig(model_id=model or "unset").to_dict()
    base.update(PRESETS.get(preset, {}))
    base["timestep_sampling"] = sampling_for(model)
    return {"model_id": model, **{k: base[k] for k in FORM_FIELDS}}


def sampling_for(model: str) -> str:
    """The timestep sampling a model's variant trains with: turbo's 8 steps, else the config's default."""
    return "turbo_discrete" if info_for(model or "").variant == "turbo" else TrainConfig.timestep_sampling


def checked(values: dict, model: str) -> dict:
    """`values` over the model's defaults, keeping only known fields whose value TrainConfig accepts."""
    out = defaults(values.get("model_id") or model)
    for k, v in values.items():
        if k not in FORM_FIELDS:
            continue
        try:
            TrainConfig.from_dict({**{f: out[f] for f in FORM_FIELDS}, "model_id": out["model_id"] or "unset", k: v})
        except (ConfigError, TypeError):
            continue
        out[k] = v
    return out


def from_run_config(config: dict) -> dict:
    """A past run's config.json as form values ("start from this run's settings")."""
    return checked({k: v for k, v in config.items() if k in FORM_FIELDS or k == "model_id"},
                   config.get("model_id", ""))


def _path(dataset: str):
    return paths.dataset_dir(dataset) / SAVED_FILE


def load_saved(dataset: str, model: str) -> tuple[dict, str] | None:
    """(values, preset name) last saved for the dataset, or None."""
    try:
        data = read_json(_path(dataset), default=None)
    except (OSError, ValueError):  # damaged or unreadable: start from defaults, the next save rewrites it
        return None
    if not isinstance(data, dict) or not isinstance(data.get("values"), dict):
        return None
    preset = data.get("preset") if data.get("preset") in preset_names() else DEFAULT_PRESET
    return checked(data["values"], model), preset


def save(dataset: str, values: dict, preset: str) -> None:
    if not paths.dataset_dir(dataset).is_dir():
        return  # the dataset was deleted under the page: nothing to attach settings to
    write_json(_path(dataset), {"preset": preset, "values": values, "saved_at": time.time()})
