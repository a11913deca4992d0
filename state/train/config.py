"""The training config: one dataclass, checked before anything heavy loads (STYLE.md §7, §11).

Written once to `<run>/config.json` before step 1 and read-only afterwards. Derived numbers
(total steps, warmup steps, steps per epoch) live in `Plan`, never back in the config. This module
imports no torch, so the dashboard can validate a form with it.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from state.model.catalog import DEFAULT_MODEL_ID
from state.train.trackers import TRACKERS

ATTN_PROJS = ("to_q", "to_k", "to_v", "to_out.0")
MLP_PROJS = ("gate_proj", "up_proj", "down_proj")
ATTN_BLOCKS = ("self_attn", "cross_attn")
OPTIMIZERS = ("adamw_8bit", "adamw")
ADAPTER_TYPES = ("lora", "dora", "lokr")  # peft LoraConfig, LoraConfig(use_dora=True), LoKrConfig
BASE_QUANTS = ("none", "int8")  # int8: torchao weight-only on the frozen DiT blocks (trainer/train/quant.py)
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
    base_quant: str = "none"      # any of BASE_QUANTS: the frozen base's Linear weights in int8, the adapter fp32
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
    gpus: int = 1                  # data-parallel ranks (torchrun), one per GPU; the batch above stays the global batch
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
    # -- experiment trackers fed the same step and validation events (state/train/trackers.py)
    report_to: list = field(default_factory=list)  # subset of TRACKERS: tensorboard, trackio (each an optional pip package)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"The config must be a JSON object, got {type(d).__name__}.")
        cfg = cls(**_checked_fields(cls, d))
        cfg._check_combinations()
        return cfg

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"No config file at {path}. Pass --config FILE or write config.json in the run folder.") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

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
        """Types and ranges (pydantic, from field_limits()), then the checks that span fields; every error
        names the field and the fix."""
        _checked_fields(type(self), self.to_dict())
        self._check_combinations()

    def _check_combinations(self) -> None:
        if any(m in ATTN_PROJS for m in self.target_modules) and not self.target_blocks:
            raise ConfigError("target_blocks is empty but target_modules has attention projections: "
                              f"list at least one of {list(ATTN_BLOCKS)}.")
        if self.grad_accum % self.gpus:
            raise ConfigError(f"gpus {self.gpus}: grad_accum ({self.grad_accum}) must be a multiple of it, because each GPU "
                              f"runs grad_accum / gpus of every step's micro-batches. Set grad_accum to "
                              f"{-(-self.grad_accum // self.gpus) * self.gpus} (lower batch_size to keep the global batch).")
        if 0 < self.clip_seconds < 1.0:
            raise ConfigError("clip_seconds must be 0 (whole tracks) or at least 1 second.")
        if self.early_stop_patience and not self.val_every:
            raise ConfigError("early_stop_patience needs validation: set val_every > 0 (or patience 0).")


def parse_overrides(pairs: list[str]) -> dict:
    """`--set FIELD=VALUE` arguments as config changes: VALUE is read as JSON when it parses (32, 1e-4,
    true, null, ["to_q","to_k"]), else kept as a string (cuda:1, adamw). A later --set of a field wins."""
    out = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set {pair!r}: write FIELD=VALUE, e.g. --set rank=32 or --set device=cuda:1.")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


# ---- the fields' types and ranges, checked by pydantic ------------------------------------------
# Types come from the dataclass annotations; field_limits() adds each field's allowed values, in one place.
# A new field needs only its line in TrainConfig (and an entry here when not every value of its type fits).

def _one_of(choices: tuple):
    return _after(lambda v: v in choices, lambda v: f"must be one of {list(choices)}")


def _subset_of(allowed: tuple, non_empty: bool = False):
    def ok(v: list) -> bool:
        return all(x in allowed for x in v) and len(set(v)) == len(v) and (bool(v) or not non_empty)
    return _after(ok, lambda v: f"must list {'at least one of the ' if non_empty else ''}distinct names from "
                                f"{list(allowed)}")


def _no_token():
    return _after(lambda v: not _TOKEN_LIKE.search(v), lambda v: "contains what looks like a Hugging Face token; "
                  "tokens are never stored in config.json. Set HF_TOKEN in the environment instead")


def _device_ok(v: str) -> bool:
    parts = [p for p in v.lower().split(":") if p]
    ok = {"auto", "cpu", "cuda", "mps", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16"}
    return v == "auto" or (bool(parts) and parts[0] != "auto" and all(p in ok or p.isdigit() for p in parts))


def _after(ok, why):
    """A pydantic AfterValidator whose message (`why(value)`) the ConfigError shows after the field name."""
    from pydantic import AfterValidator

    def check(v):
        if not ok(v):
            raise ValueError(why(v))
        return v
    return AfterValidator(check)


def field_limits() -> dict[str, tuple]:
    from annotated_types import Ge, Gt, Interval

    return {
        "model_id": (_after(lambda v: bool(v.strip()), lambda v: "is empty: name a Hub model id or a local "
                            "diffusers model folder"), _no_token()),
        "manifest": (_no_token(),),
        "device": (_no_token(), _after(_device_ok, lambda v: "is not understood: use auto, cpu, cuda, cuda:1 or "
                                                              "mps, optionally followed by :fp32 or :bf16")),
        "max_seconds": (Interval(ge=1.0, le=3600.0),),
        "rank": (Ge(1),), "alpha": (Gt(0),), "dropout": (Interval(ge=0.0, le=0.9),),
        "adapter_type": (_one_of(ADAPTER_TYPES),), "merged_scale": (Interval(ge=0.0, le=4.0),),
        "base_quant": (_one_of(BASE_QUANTS),),
        "target_modules": (_subset_of(ATTN_PROJS + MLP_PROJS, non_empty=True),),
        "target_blocks": (_subset_of(ATTN_BLOCKS),),
        "optimizer": (_one_of(OPTIMIZERS),), "scheduler": (_one_of(SCHEDULERS),),
        "learning_rate": (Gt(0), _after(lambda v: v <= 1.0, lambda v: "is far too high for LoRA: use about 1e-4")),
        "weight_decay": (Interval(ge=0.0, le=1.0),), "warmup_ratio": (Interval(ge=0.0, le=0.5),),
        "max_grad_norm": (Interval(ge=0.0, le=1e6),),
        "epochs": (Ge(0),), "max_steps": (Ge(0),), "batch_size": (Ge(1),), "grad_accum": (Ge(1),), "gpus": (Ge(1),),
        "clip_seconds": (Interval(ge=0.0, le=600.0),), "seed": (Ge(0),),
        "timestep_sampling": (_one_of(SAMPLINGS),),
        "timestep_mu": (Interval(ge=-10.0, le=10.0),), "timestep_sigma": (Gt(0),),
        "cond_dropout": (Interval(ge=0.0, le=1.0),),
        "checkpoint_every": (Ge(0),), "keep_last": (Ge(1),), "shift": (Gt(0),),
        "val_every": (Ge(0),), "val_share": (Interval(ge=0.0, le=0.5),), "val_timesteps": (Interval(ge=1, le=64),),
        "val_max_tracks": (Ge(1),), "early_stop_patience": (Ge(0),), "ema_decay": (Interval(ge=0.0, le=0.99999),),
        "attention_backend": (_one_of(ATTENTION_BACKENDS),),
        "sample_every": (Ge(0),), "sample_seed": (Ge(0),), "sample_seconds": (Interval(ge=1.0, le=600.0),),
        "sample_steps": (Interval(ge=0, le=200),),
        "sample_prompt": (_after(lambda v: all(k in SAMPLE_PROMPT_FIELDS for k in v),
                                 lambda v: f"has an unknown field: use {', '.join(SAMPLE_PROMPT_FIELDS)}"),),
        "report_to": (_subset_of(tuple(TRACKERS)),),
    }


@functools.lru_cache(maxsize=None)
def _model(cls: type) -> type:
    """A pydantic model of `cls`'s (TrainConfig's) fields: strict types (no "2" for 2, no true for 1), finite
    numbers, unknown fields refused. Built on first use, so `import state` stays free of pydantic."""
    import typing

    from pydantic import BeforeValidator, ConfigDict, Field, create_model

    hints = typing.get_type_hints(cls)
    limits = field_limits()
    unknown = set(limits) - set(hints)
    assert not unknown, f"field_limits() names fields {cls.__name__} lacks: {unknown}"
    fields = {}
    for f in dataclasses.fields(cls):
        extra = limits.get(f.name, ())
        if hints[f.name] in (list, tuple):  # a tuple is a list to a JSON file (and to dataclasses.asdict)
            extra = (BeforeValidator(lambda v: list(v) if isinstance(v, tuple) else v), *extra)
        typ = _constrained(hints[f.name], extra)
        default = Field(default=f.default) if f.default_factory is dataclasses.MISSING else \
            Field(default_factory=f.default_factory)
        fields[f.name] = (typ, default)
    return create_model("TrainConfigFields", __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
                        **fields)


def _constrained(typ, extra: tuple):
    """`typ` with the limits attached; for `X | None` to X, so None stays allowed and unchecked."""
    import types
    import typing

    if not extra:
        return typ
    args = typing.get_args(typ)
    if isinstance(typ, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return typing.Annotated[(inner[0] if len(inner) == 1 else typing.Union[tuple(inner)], *extra)] | None
    return typing.Annotated[(typ, *extra)]


def _checked_fields(cls: type, d: dict) -> dict:
    """`d` as TrainConfig's constructor arguments, validated; the first problem becomes a ConfigError."""
    from pydantic import ValidationError

    try:
        return dict(_model(cls).model_validate(d))
    except ValidationError as exc:
        raise ConfigError(_explain(cls, exc.errors(include_url=False)[0])) from None


def _explain(cls: type, err: dict) -> str:
    name = ".".join(str(p) for p in err["loc"]) or "config"
    field_name = str(err["loc"][0]) if err["loc"] else ""
    if err["type"] == "extra_forbidden":
        names = [f.name for f in dataclasses.fields(cls)]
        near = difflib.get_close_matches(field_name, names, n=1)
        tip = f" Did you mean {near[0]!r}?" if near else f" Known fields: {', '.join(names)}."
        return f"Unknown config field {field_name!r}.{tip}"
    msg, value = err["msg"], err["input"]
    # the value is echoed to help, except where it holds a token: this message reaches events.jsonl
    got = "" if _TOKEN_LIKE.search(repr(value)) else f", got {value!r}"
    if err["type"] == "value_error":  # our own checks: the sentence after the field name
        return f"{name} {msg.removeprefix('Value error, ')}{got}."
    return f"{name}: {msg[:1].lower()}{msg[1:]}{got} ({type(value).__name__})."


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
# One-field limits belong in field_limits(); these helpers serve checks that span fields.

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
