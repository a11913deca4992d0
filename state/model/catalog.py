"""Known ACE-Step 1.5 models and their inference defaults. Stdlib only: the dashboard imports it.

The model id is a setting (ACESTEP.md §1); this table only pre-fills choices and defaults. Any
Hub id or local diffusers folder still works, with its variant guessed from the name or config.
Each entry says whether its id is confirmed (an unconfirmed one may not exist on the Hub) and
how a fetch gets it: which repos, which of their files (`allow_patterns`), and whether the
download is already diffusers format or the release layout that trainer/model/convert.py imports.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

DEMO_MODEL_ID = "acelora/tiny-demo"  # not a Hub repo: resolved to <workspace>/models/acelora-tiny-demo
DEFAULT_MODEL_ID = "ACE-Step/acestep-v15-base"  # the specified default: 2B base, the most plastic for LoRA

# How a catalog model reaches the disk:
#   diffusers  one diffusers-format repo, downloaded as it is (only the pipeline's folders)
#   original   the release layout: DiT repo + shared VAE/text encoder, imported into diffusers format
#   demo       built in code (trainer/model/tiny.py), never downloaded
SOURCES = ("diffusers", "original", "demo")

# The folders AceStepPipeline.from_pretrained reads (the audio tokenizer pair feeds auto-label codes).
DIFFUSERS_PATTERNS = ("model_index.json", "scheduler/*", "transformer/*", "condition_encoder/*", "vae/*",
                      "text_encoder/*", "tokenizer/*", "audio_tokenizer/*", "audio_token_detokenizer/*")
# A release DiT repo: config, weights (one file or index + shards), silence latent; not its remote code.
ORIGINAL_DIT_PATTERNS = ("config.json", "*.safetensors", "model.safetensors.index.json", "silence_latent.pt")
RELEASE_REPO = "ACE-Step/Ace-Step1.5"  # holds vae/ and Qwen3-Embedding-0.6B/ shared by every 2B DiT
RELEASE_SHARED_PATTERNS = ("vae/*", "Qwen3-Embedding-0.6B/*")


@dataclass(frozen=True)
class Part:
    """One snapshot_download of a fetch: which repo, which of its files, where they land."""

    repo_id: str
    allow_patterns: tuple[str, ...] | None = None  # None: every file of the repo
    subdir: str = ""                                # folder under the download folder ("" = its root)


@dataclass(frozen=True)
class ModelInfo:
    model_id: str        # Hub repo id (or DEMO_MODEL_ID); the converted folder is models/<org--name>
    variant: str         # base | sft | turbo
    size: str            # 2B | XL | tiny
    steps: int           # default num_inference_steps
    shift: float         # timestep shift for sampling; stored with adapters, not used by the loss
    guidance: float      # APG guidance scale; 1.0 = none (turbo has guidance distilled in)
    note: str = ""       # one line for the model picker
    name: str = ""       # what the model picker calls it
    confirmed: bool = False  # the repo is known to exist with this layout (ACESTEP.md §1-2); else a guess
    source: str = "diffusers"  # diffusers | original | demo (SOURCES)
    parts: tuple[Part, ...] = ()  # what a fetch downloads; empty: the whole repo named model_id

    def to_dict(self) -> dict:
        return asdict(self)


# base/sft: 30-50 steps work; 50 is the quality default. turbo: 8 fixed steps, no guidance.
INFERENCE_DEFAULTS = {
    "turbo": {"steps": 8, "shift": 3.0, "guidance": 1.0},
    "base": {"steps": 50, "shift": 3.0, "guidance": 7.0},
    "sft": {"steps": 50, "shift": 3.0, "guidance": 7.0},
}
STEP_RANGE = {"turbo": (8, 8), "base": (30, 50), "sft": (30, 50)}


def _info(model_id: str, variant: str, size: str, note: str, **kw) -> ModelInfo:
    d = INFERENCE_DEFAULTS[variant]
    return ModelInfo(model_id, variant, size, d["steps"], d["shift"], d["guidance"], note, **kw)


def _diffusers(model_id: str, variant: str, size: str, name: str, note: str, confirmed: bool) -> ModelInfo:
    return _info(model_id, variant, size, note, name=name, confirmed=confirmed, source="diffusers",
                 parts=(Part(model_id, DIFFUSERS_PATTERNS),))


def _original(dit_repo: str, variant: str, name: str, note: str) -> ModelInfo:
    """A 2B DiT repo of the release plus the shared VAE and text encoder, imported on download."""
    return _info(dit_repo, variant, "2B", note, name=name, confirmed=True, source="original",
                 parts=(Part(dit_repo, ORIGINAL_DIT_PATTERNS, subdir=dit_repo.split("/", 1)[1]),
                        Part(RELEASE_REPO, RELEASE_SHARED_PATTERNS)))


# Picker order: the default first, unconfirmed ids last.
KNOWN_MODELS: dict[str, ModelInfo] = {m.model_id: m for m in [
    _original(DEFAULT_MODEL_ID, "base", "ACE-Step 1.5 base (2B)",
              "the most plastic variant for LoRA; release layout, converted on download; fits a 24 GB GPU"),
    _original("ACE-Step/acestep-v15-sft", "sft", "ACE-Step 1.5 sft (2B)",
              "supervised fine-tune of base; release layout, converted on download"),
    _diffusers("Runware/acestep-v15-turbo-diffusers", "turbo", "2B", "ACE-Step 1.5 turbo (2B)",
               "third-party diffusers port; 8-step distilled, less plastic for LoRA", confirmed=True),
    _diffusers("ACE-Step/acestep-v15-xl-base-diffusers", "base", "XL", "ACE-Step 1.5 XL base",
               "best quality, needs a large GPU", confirmed=True),
    _diffusers("ACE-Step/acestep-v15-xl-sft-diffusers", "sft", "XL", "ACE-Step 1.5 XL sft",
               "XL supervised fine-tune, needs a large GPU", confirmed=True),
    _diffusers("ACE-Step/acestep-v15-xl-turbo-diffusers", "turbo", "XL", "ACE-Step 1.5 XL turbo",
               "8-step distilled; fast previews, less plastic for LoRA", confirmed=True),
    _info(DEMO_MODEL_ID, "base", "tiny", "random weights built offline: produces noise, not music",
          name="Tiny demo model", confirmed=True, source="demo"),
    _diffusers("Runware/acestep-v15-base-diffusers", "base", "2B", "ACE-Step 1.5 base (2B, diffusers mirror)",
               "seen in one cache listing only; may not exist, prefer ACE-Step 1.5 base (2B)", confirmed=False),
]}


def known_ids() -> list[str]:
    return list(KNOWN_MODELS)


def parts_for(model_id: str) -> tuple[Part, ...]:
    """What fetching `model_id` downloads: the catalog's parts, else the whole repo as it is."""
    info = KNOWN_MODELS.get(str(model_id).strip())
    return info.parts if info and info.parts else (Part(str(model_id).strip()),)


def label(model_id: str) -> str:
    """The model picker's line: name, id, note, and a flag on ids nobody has confirmed."""
    info = info_for(model_id)
    head = f"{info.name} · {model_id}" if info.name else str(model_id)
    flag = " (unconfirmed id)" if model_id in KNOWN_MODELS and not info.confirmed else ""
    return f"{head}{flag} — {info.note}" if info.note else head + flag


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
