"""The training config: one dataclass, checked before anything heavy loads (STYLE.md §7, §11).

Written once to `<run>/config.json` before step 1 and read-only afterwards. Derived numbers
(total steps, warmup steps, steps per epoch) live in `Plan`, never back in the config. This module
imports no torch, so the dashboard can validate a form with it.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from state.model.catalog import DEFAULT_MODEL_ID

ATTN_PROJS = ("to_q", "to_k", "to_v", "to_out.0")
MLP_PROJS = ("gate_proj", "up_proj", "down_proj")
ATTN_BLOCKS = ("self_attn", "cross_attn")
OPTIMIZERS = ("adamw_8bit", "adamw")
ADAPTER_TYPES = ("lora", "dora", "lokr")  # peft LoraConfig, LoraConfig(use_dora=True), LoKrConfig
SCHEDULERS = ("constant_with_warmup", "constant", "linear", "cosine")
# logit_normal_max2: the release's own sampler (the larger of two logit-normal draws, ACESTEP.md §3);
# logit_normal: one draw; turbo_discrete: the 8 turbo steps upstream's LoRA trainer samples.
SAMPLINGS = ("logit_normal_max2", "logit_normal", "turbo_discrete")
# diffusers attention dispatch backends that handle ACE-Step's sliding-window layers (flash needs flash-attn)
ATTENTION_BACKENDS = ("native", "_native_efficient", "_native_cudnn", "flash")
SAMPLE_PROMPT_FIELDS = ("caption", "lyrics", "bpm", "keyscale", "timesignature", "vocal_language")
# Fields that fix the adapter's shape, what it adapts, or what the saved optimizer state means: a resume
# refuses to change them (naming the field). Every other field may change at resume and applies.
ADAPTER_FIELDS = ("model_id", "adapter_type", "rank", "alpha", "target_modules", "target_blocks")
FIXED_AT_RESUME = ADAPTER_FIELDS + ("optimizer", "val_share", "seed")
_TOKEN_LIKE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the field and what is allowed."""


@dataclass
class TrainConfig:
    # -- what to train on
    model_id: str = DEFAULT_MODEL_ID  # Hub id or local diffusers folder (state.model.catalog)
    manifest: str = ""            # dataset manifest (JSONL); `--manifest` overrides it
    device: str = "auto"          # auto | cpu | cuda | cuda:N | mps, optionally ":fp32" / ":bf16"
    max_seconds: float = 240.0    # tracks are cut to this many seconds when preprocessed (upstream trains <= 240 s)
    # -- the adapter (diffusers module names)
    adapter_type: str = "lora"    # any of ADAPTER_TYPES; LoKr's rank/alpha are peft LoKrConfig's r/alpha
    rank: int = 64                # LoRA rank r
    alpha: float = 64.0           # LoRA alpha; the update is scaled by alpha / rank
    dropout: float = 0.1          # dropout on the LoRA input
    target_modules: list = field(default_factory=lambda: list(ATTN_PROJS))  # subset of ATTN_PROJS + MLP_PROJS
    target_blocks: list = field(default_factory=lambda: list(ATTN_BLOCKS))  # which attentions the ATTN_PROJS adapt
    # -- optimisation
    optimizer: str = "adamw_8bit"  # adamw_8bit (bitsandbytes) | adamw (torch)
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    scheduler: str = "constant_with_warmup"  # any of SCHEDULERS, via transformers.get_scheduler
    warmup_ratio: float = 0.03     # warmup steps = ceil(warmup_ratio * optimizer steps)
    max_grad_norm: float = 1.0     # clip the LoRA gradients' global norm (0 = no clipping)
    epochs: int = 0                # passes over the dataset (0 = the recipe: see recipe_steps); max_steps wins
    max_steps: int = 0             # optimizer steps; > 0 overrides epochs and the recipe
    batch_size: int = 1            # tracks per micro-batch
    grad_accum: int = 1            # micro-batches per optimizer step
    clip_seconds: float = 0.0      # 0 = whole tracks (up to max_seconds); else a random crop of this length
    seed: int = 42
    gradient_checkpointing: bool = True  # trade compute for memory in the DiT blocks
    # -- the objective (ACESTEP.md §3)
    timestep_sampling: str = "logit_normal_max2"  # any of SAMPLINGS; the default is the release's own
    timestep_mu: float | None = None     # None: the model config's timestep_mu, else -0.4
    timestep_sigma: float | None = None  # None: the model config's timestep_sigma, else 1.0
    cond_dropout: float | None = None  # share of samples given null_condition_emb; None: 0.15, or 0 on turbo
    # -- checkpoints
    checkpoint_every: int = 200    # optimizer steps between checkpoints (0 = only on stop / save_now)
    keep_last: int = 3             # checkpoints kept on disk (the oldest are deleted)
    # -- stored with the adapter for inference only; not part of the loss
    shift: float = 3.0
    merged_scale: float = 0.0     # > 0: also save <run>/merged/, the whole pipeline with the adapter fused at this scale
    # -- validation (trainer/train/validation.py): fixed timesteps and noise, so it is comparable across steps
    val_every: int = 100           # optimizer steps between validations (0 = off)
    val_share: float = 0.1         # share of tracks held out when the dataset has >= 8 (else validate on training tracks)
    val_timesteps: int = 8         # fixed timesteps, evenly spread over (0, 1)
    val_max_tracks: int = 8        # validate on at most this many tracks (its cost grows with them)
    early_stop_patience: int = 0   # stop after this many validations without a new best (0 = never)
    ema_decay: float = 0.0         # EMA of the LoRA weights, exported as final/ema/ (0 = off; e.g. 0.999)
    # -- speed
    attention_backend: str = "native"  # any of ATTENTION_BACKENDS (diffusers attention dispatch)
    compile: bool = False          # torch.compile the repeated transformer blocks (CUDA; slower first steps)
    # -- preview samples, rendered in the training process from the live transformer (trainer/listen/previews.py)
    sample_every: int = 500        # optimizer steps between previews, plus step 0 and the last (0 = off; sample_now works)
    sample_prompt: dict = field(default_factory=dict)  # SAMPLE_PROMPT_FIELDS subset; empty = the first track's labels
    sample_seed: int = 1234        # fixed seed: every preview starts from the same noise
    sample_seconds: float = 10.0   # preview length
    sample_steps: int = 0          # denoising steps (0 = the base model variant's default)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"The config must be a JSON object, got {type(d).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            k = unknown[0]
            near = difflib.get_close_matches(k, names, n=1)
            tip = f" Did you mean {near[0]!r}?" if near else f" Known fields: {', '.join(names)}."
            raise ConfigError(f"Unknown config field {k!r}.{tip}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"No config file at {path}. Pass --config FILE or write config.json in the run folder.") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Identifies the config a checkpoint was trained with (canonical JSON, sha256, 16 hex)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    # ---- validation ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Type and range checks; every error names the field and the fix."""
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        _at_least("rank", self.rank, 1)
        _positive("alpha", self.alpha)
        _in_range("dropout", self.dropout, 0.0, 0.9)
        _choice("adapter_type", self.adapter_type, ADAPTER_TYPES)
        _in_range("merged_scale", self.merged_scale, 0.0, 4.0)
        _subset("target_modules", self.target_modules, ATTN_PROJS + MLP_PROJS)
        _subset("target_blocks", self.target_blocks, ATTN_BLOCKS)
        if any(m in ATTN_PROJS for m in self.target_modules) and not self.target_blocks:
            raise ConfigError("target_blocks is empty but target_modules has attention projections: "
                              f"list at least one of {list(ATTN_BLOCKS)}.")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("timestep_sampling", self.timestep_sampling, SAMPLINGS)
        _positive("learning_rate", self.learning_rate)
        if self.learning_rate > 1.0:
            raise ConfigError(f"learning_rate {self.learning_rate} is far too high for LoRA: use about 1e-4.")
        _in_range("weight_decay", self.weight_decay, 0.0, 1.0)
        _in_range("warmup_ratio", self.warmup_ratio, 0.0, 0.5)
        _in_range("max_grad_norm", self.max_grad_norm, 0.0, 1e6)
        _at_least("epochs", self.epochs, 0)
        _at_least("max_steps", self.max_steps, 0)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("grad_accum", self.grad_accum, 1)
        _in_range("clip_seconds", self.clip_seconds, 0.0, 600.0)
        if 0 < self.clip_seconds < 1.0:
            raise ConfigError("clip_seconds must be 0 (whole tracks) or at least 1 second.")
        _in_range("max_seconds", self.max_seconds, 1.0, 3600.0)
        _at_least("seed", self.seed, 0)
        if self.timestep_sigma is not None:
            _positive("timestep_sigma", self.timestep_sigma)
        if self.timestep_mu is not None:
            _in_range("timestep_mu", self.timestep_mu, -10.0, 10.0)
        if self.cond_dropout is not None:
            _in_range("cond_dropout", self.cond_dropout, 0.0, 1.0)
        _at_least("val_every", self.val_every, 0)
        _in_range("val_share", self.val_share, 0.0, 0.5)
        _in_range("val_timesteps", self.val_timesteps, 1, 64)
        _at_least("val_max_tracks", self.val_max_tracks, 1)
        _at_least("early_stop_patience", self.early_stop_patience, 0)
        if self.early_stop_patience and not self.val_every:
            raise ConfigError("early_stop_patience needs validation: set val_every > 0 (or patience 0).")
        _in_range("ema_decay", self.ema_decay, 0.0, 0.99999)
        _choice("attention_backend", self.attention_backend, ATTENTION_BACKENDS)
        _at_least("checkpoint_every", self.checkpoint_every, 0)
        _at_least("keep_last", self.keep_last, 1)
        _positive("shift", self.shift)
        _at_least("sample_every", self.sample_every, 0)
        _at_least("sample_seed", self.sample_seed, 0)
        _in_range("sample_seconds", self.sample_seconds, 1.0, 600.0)
        _in_range("sample_steps", self.sample_steps, 0, 200)
        bad = [k for k in self.sample_prompt if k not in SAMPLE_PROMPT_FIELDS]
        if bad:
            raise ConfigError(f"sample_prompt has unknown field {bad[0]!r}: use {', '.join(SAMPLE_PROMPT_FIELDS)}.")
        if not self.model_id.strip():
            raise ConfigError("model_id is empty: name a Hub model id or a local diffusers model folder.")
        for name in ("model_id", "manifest", "device"):
            if _TOKEN_LIKE.search(getattr(self, name)):
                raise ConfigError(f"{name} contains what looks like a Hugging Face token; tokens are never "
                                  "stored in config.json. Set HF_TOKEN in the environment instead.")
        if self.device != "auto":
            parts = [p for p in self.device.lower().split(":") if p]
            ok = {"cpu", "cuda", "mps", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16"}
            if not parts or any(p not in ok and not p.isdigit() for p in parts):
                raise ConfigError(f"device {self.device!r} is not understood: use auto, cpu, cuda, cuda:1 or mps, "
                                  "optionally followed by :fp32 or :bf16.")


# ---- the numbers derived from a config and a dataset ----------------------------------------

@dataclass(frozen=True)
class Plan:
    dataset_size: int       # tracks trained on (held-out validation tracks excluded)
    samples_per_step: int   # batch_size * grad_accum
    steps_per_epoch: int    # ceil(batches per epoch / grad_accum); a batch never spans two epochs
    total_steps: int
    warmup_steps: int
    source: str             # "max_steps" | "epochs" | "recipe": where total_steps came from


# The default schedule, in optimizer steps, grows with the dataset but slower than it: a handful of songs
# needs hundreds of passes before the adapter changes the sound, a large set far fewer
# (ACESTEP.md §4; how these numbers were chosen: bench/learns.py and the issue-13 note).
RECIPE_STEPS_AT_5 = 2000     # optimizer steps (batch 1) for 5 tracks
RECIPE_EXPONENT = 0.5        # steps scale with tracks ** exponent
RECIPE_MIN, RECIPE_MAX = 1500, 12000


def recipe_steps(tracks: int, samples_per_step: int = 1) -> int:
    """Optimizer steps of the default recipe for `tracks` training tracks."""
    steps = RECIPE_STEPS_AT_5 * (max(1, tracks) / 5) ** RECIPE_EXPONENT / max(1, samples_per_step) ** 0.5
    return int(min(RECIPE_MAX, max(RECIPE_MIN, round(steps, -1))))


def batches_per_epoch(cfg: TrainConfig, dataset_size: int) -> int:
    return math.ceil(dataset_size / cfg.batch_size)


def make_plan(cfg: TrainConfig, dataset_size: int) -> Plan:
    if dataset_size < 1:
        raise ConfigError("The dataset has no usable tracks: add audio (and captions) on the Dataset page.")
    per_step = cfg.batch_size * cfg.grad_accum
    steps_per_epoch = math.ceil(batches_per_epoch(cfg, dataset_size) / cfg.grad_accum)
    if cfg.max_steps > 0:
        total, source = cfg.max_steps, "max_steps"
    elif cfg.epochs > 0:
        total, source = cfg.epochs * steps_per_epoch, "epochs"
    else:
        total, source = recipe_steps(dataset_size, per_step), "recipe"
    return Plan(dataset_size, per_step, steps_per_epoch, total, math.ceil(cfg.warmup_ratio * total), source)


def validation_split(track_ids: list[str], cfg: TrainConfig) -> tuple[list[int], list[int], bool]:
    """(train indices, validation indices, held_out). With >= 8 tracks, `val_share` of them (at least one)
    are held out, chosen by a hash of their ids and the seed (stable across resumes and row order);
    with fewer, validation runs on (up to val_max_tracks of) the training tracks themselves."""
    n = len(track_ids)
    order = sorted(range(n), key=lambda i: hashlib.sha256(f"{cfg.seed}:{track_ids[i]}".encode()).hexdigest())
    if n >= 8 and cfg.val_share > 0:
        k = min(cfg.val_max_tracks, max(1, round(n * cfg.val_share)))
        return sorted(order[k:]), sorted(order[:k]), True
    return list(range(n)), sorted(order[: cfg.val_max_tracks]), False


# ---- checks ---------------------------------------------------------------------------------

_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list, tuple), "dict": (dict,),
          "float | None": (int, float, type(None))}


def _check_type(name: str, value: Any, type_name: Any) -> None:
    allowed = _TYPES[str(type_name)]
    # bool is an int subclass; `"rank": true` is a mistake, not rank 1
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        want = " or ".join(t.__name__ for t in allowed).replace("NoneType", "null")
        raise ConfigError(f"{name} must be {want}, got {value!r} ({type(value).__name__}).")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.")


def _at_least(name: str, v: int, lo: int) -> None:
    if v < lo:
        raise ConfigError(f"{name} must be at least {lo}, got {v}.")


def _positive(name: str, v: float) -> None:
    if not v > 0:
        raise ConfigError(f"{name} must be greater than 0, got {v}.")


def _in_range(name: str, v: float, lo: float, hi: float) -> None:
    if not lo <= v <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {v}.")


def _choice(name: str, v: str, choices: tuple) -> None:
    if v not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {v!r}.")


def _subset(name: str, values: list, allowed: tuple) -> None:
    bad = [v for v in values if v not in allowed]
    if bad or len(set(values)) != len(values):
        raise ConfigError(f"{name} must list distinct names from {list(allowed)}, got {list(values)!r}.")
    if name == "target_modules" and not values:
        raise ConfigError(f"target_modules is empty: list at least one of {list(allowed)}.")
