"""Before a run starts: presets, a GPU-memory and time estimate, and the checks that can block it.

The estimate is arithmetic on the model's published shape (ACESTEP.md §3), not a measurement:
it is meant to catch "this cannot fit" before a user pays for a GPU hour, and is labelled as
approximate in the UI. The real numbers arrive in the run's step events.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from state import device as device_mod
from state import paths, settings
from state.dataset.manifest import summary
from state.model.catalog import info_for
from state.train.config import recipe_steps

# name -> overrides of the training defaults. Starting points, chosen from the memory estimate below.
PRESETS: dict[str, dict] = {
    "Quick test (minutes, checks the pipeline)": {"max_steps": 30, "rank": 8, "alpha": 8.0, "clip_seconds": 10.0,
                                                  "checkpoint_every": 10, "keep_last": 2},
    "8 GB GPU": {"rank": 16, "alpha": 16.0, "clip_seconds": 20.0, "batch_size": 1, "grad_accum": 4,
                 "gradient_checkpointing": True, "optimizer": "adamw_8bit"},
    "12 GB GPU": {"rank": 32, "alpha": 32.0, "clip_seconds": 30.0, "batch_size": 1, "grad_accum": 2,
                  "gradient_checkpointing": True, "optimizer": "adamw_8bit"},
    "16 GB GPU": {"rank": 64, "alpha": 64.0, "clip_seconds": 45.0, "batch_size": 1, "grad_accum": 2,
                  "gradient_checkpointing": True, "optimizer": "adamw_8bit"},
    "24+ GB GPU": {"rank": 64, "alpha": 64.0, "clip_seconds": 60.0, "batch_size": 2, "grad_accum": 1,
                   "gradient_checkpointing": False, "optimizer": "adamw_8bit"},
}

# DiT shapes (ACESTEP.md §3). The condition encoder stays loaded during training; VAE and text
# encoder are freed after preprocessing.
SHAPES = {
    "2B": {"hidden": 2048, "layers": 24, "mlp": 6144, "kv_dim": 1024, "params": 2.0e9},
    "XL": {"hidden": 2560, "layers": 32, "mlp": 7680, "kv_dim": 1280, "params": 4.0e9},
}
DEVICE_TFLOPS = {"cpu": 0.2, "mps": 8.0, "cuda": 60.0}  # sustained mixed-precision throughput, roughly
KNOWN_GPU_TFLOPS = {"H100": 300.0, "H200": 300.0, "A100": 120.0, "L40S": 90.0, "A10G": 35.0, "L4": 30.0,
                    "T4": 8.0, "4090": 80.0, "3090": 35.0, "A6000": 40.0}


@dataclass
class Check:
    level: str  # ok | warning | error
    text: str


@dataclass
class Preflight:
    checks: list[Check] = field(default_factory=list)
    mem_gb: float | None = None
    gpu_gb: float | None = None
    minutes: float | None = None

    @property
    def blocked(self) -> bool:
        return any(c.level == "error" for c in self.checks)

    def add(self, level: str, text: str) -> None:
        self.checks.append(Check(level, text))


def _shape(model: str) -> dict | None:
    size = info_for(model).size
    if size in SHAPES:
        return SHAPES[size]
    d = settings.resolve_model_dir(model)
    try:
        cfg = json.loads((d / "transformer" / "config.json").read_text()) if d else None
    except (OSError, ValueError):
        cfg = None
    if not cfg:
        return None
    h, n = cfg.get("hidden_size", 2048), cfg.get("num_hidden_layers", 24)
    mlp = cfg.get("intermediate_size", 3 * h)
    kv = cfg.get("num_key_value_heads", 8) * cfg.get("head_dim", 128)
    return {"hidden": h, "layers": n, "mlp": mlp, "kv_dim": kv, "params": n * (4 * h * h + 4 * h * kv + 3 * h * mlp)}


def estimate_memory_gb(model: str, cfg: dict) -> float | None:
    s = _shape(model)
    if s is None:
        return None
    h, n, kv = s["hidden"], s["layers"], s["kv_dim"]
    blocks = len(cfg.get("target_blocks", ["self_attn", "cross_attn"]))
    r = cfg.get("rank", 64)
    per_layer = blocks * r * ((h + h) * 2 + (h + kv) * 2)  # q,o square; k,v project to kv_dim
    lora = n * per_layer
    weights = s["params"] * 2  # bf16
    optim = lora * (4 + 4 + (2 if cfg.get("optimizer") == "adamw_8bit" else 8))  # fp32 master + grad + states
    tokens = max(1.0, cfg.get("clip_seconds", 30.0) or 120.0) * 25 / 2  # 25 latents/s, patch 2
    b = cfg.get("batch_size", 1)
    per_token_layer = h * 2 * (4 if cfg.get("gradient_checkpointing", True) else 34)
    acts = b * tokens * n * per_token_layer + b * tokens * h * 2 * 34  # one layer recomputed in full
    overhead = 1.2e9  # CUDA context, allocator slack, condition encoder activations
    return round((weights + optim + acts + overhead) / 2**30, 1)


def estimate_minutes(model: str, cfg: dict, total_steps: int, kind: str, gpu_name: str = "") -> float | None:
    s = _shape(model)
    if s is None:
        return None
    tflops = next((v for k, v in KNOWN_GPU_TFLOPS.items() if k in gpu_name), DEVICE_TFLOPS.get(kind, 1.0))
    tokens = max(1.0, cfg.get("clip_seconds", 30.0) or 120.0) * 25 / 2
    samples = cfg.get("batch_size", 1) * cfg.get("grad_accum", 1)
    flops = 6 * s["params"] * tokens * samples * (1.33 if cfg.get("gradient_checkpointing", True) else 1.0)
    return round(total_steps * flops / (tflops * 1e12 * 0.35) / 60, 1)  # ~35% utilisation


def run_preflight(model: str, cfg: dict, rows: list[dict], total_steps: int | None) -> Preflight:
    pf = Preflight()
    s = summary(rows)
    if not s["can_train"]:
        pf.add("error", s["verdict"])
    else:
        pf.add("warning" if s["captioned"] < s["usable"] else "ok", s["verdict"])
    if s["error"]:
        pf.add("warning", f"{s['error']} file(s) with errors will be skipped (see the Dataset page).")

    if settings.is_demo(model):
        pf.add("warning", "Demo model: random weights. Training runs end to end but the adapter learns noise.")
        if settings.resolve_model_dir(model) is None:
            pf.add("error", "The demo model is still being built (a few seconds); try again shortly.")
    elif settings.resolve_model_dir(model) is None:
        pf.add("error", f"{model} is not on this machine yet. Download it first (button above).")

    free = device_mod.free_disk_gb(str(paths.ensure(paths.root())))
    if free < 1:
        pf.add("error", f"Only {free} GB free on the workspace disk; checkpoints need room. Delete old runs first.")
    elif free < 5:
        pf.add("warning", f"{free} GB free on the workspace disk; lower keep-last-K or delete old runs.")
    else:
        pf.add("ok", f"{free} GB free disk.")

    dev = device_mod.describe()
    if dev["kind"] == "cpu":
        pf.add("warning" if settings.is_demo(model) else "error",
               "No GPU found: a real ACE-Step model cannot be trained on CPU in useful time." if not
               settings.is_demo(model) else "No GPU found: fine for the demo model, far too slow for a real one.")
    else:
        pf.add("ok", f"Device: {dev['label']}.")

    pf.mem_gb = estimate_memory_gb(model, cfg)
    pf.gpu_gb = dev.get("gpu_mem_total_gb")
    if pf.mem_gb is not None and pf.gpu_gb:
        if pf.mem_gb > pf.gpu_gb:
            pf.add("error", f"Estimated {pf.mem_gb} GB of GPU memory needed, the GPU has {pf.gpu_gb} GB. Lower the "
                   "clip length or rank, use batch size 1, or turn on gradient checkpointing.")
        elif pf.mem_gb > 0.9 * pf.gpu_gb:
            pf.add("warning", f"Estimated {pf.mem_gb} of {pf.gpu_gb} GB GPU memory: tight; it may run out.")
        else:
            pf.add("ok", f"Estimated {pf.mem_gb} of {pf.gpu_gb} GB GPU memory.")
    if total_steps:
        gpu_name = (dev.get("gpus") or [{}])[0].get("name", "")
        pf.minutes = estimate_minutes(model, cfg, total_steps, dev["kind"], gpu_name)
    if (short := schedule_check(cfg, s["usable"], total_steps)) is not None:
        pf.checks.append(short)
    return pf


SHORT_RUN_SHARE = 0.5  # a planned run under this share of the recipe's steps gets a warning


def schedule_check(cfg: dict, tracks: int, total_steps: int | None) -> Check | None:
    """A warning when the planned run is far shorter than the default recipe for this many tracks: the
    most common failure of ACE-Step LoRAs is an adapter that does not change the sound (ACESTEP.md §4)."""
    if not total_steps or tracks < 1:
        return None
    recipe = recipe_steps(tracks, int(cfg.get("batch_size", 1)) * int(cfg.get("grad_accum", 1)))
    if total_steps >= SHORT_RUN_SHARE * recipe:
        return None
    return Check("warning", f"{total_steps} optimizer steps is under half the default recipe for {tracks} "
                 f"track(s) ({recipe} steps). Adapters trained this briefly are the usual \"it does not change the "
                 "sound\" complaint; community recipes run hundreds of passes over a small dataset (ACESTEP.md §4). "
                 "Set max steps and epochs to 0 to use the recipe, or measure the result with the style distance "
                 "on the Runs page (a short run is fine for testing the pipeline).")
