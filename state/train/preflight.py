"""Before a run starts: presets, the GPU memory and time a run needs, and the checks that can block it.

Memory and FLOPs are measured, not guessed: the `estimate` job runs one training step of the real
DiT at the real size on fake tensors (trainer/train/fake_step.py) and caches the result
(state.train.estimates); this module only reads it. Time is those FLOPs over the GPU's peak
throughput at an assumed utilisation. The real numbers arrive in the run's step events.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from state import device as device_mod
from state import paths, settings
from state.dataset.manifest import summary
from state.train import estimates, runs, speed
from state.train.config import recipe_steps

# name -> overrides of the training defaults, derived from measured peaks (bench/real_size.py --presets:
# one fake-tensor step at the real size, bf16, conditioning at its longest): each "N GB" preset leaves
# PRESET_HEADROOM_GB of its card free after the CUDA context and allocator slack below (room for an
# in-process preview's VAE decode). With gradient checkpointing the 2B DiT's peak is mostly its own
# 3 GB of weights even for long clips, so the tiers differ in clip length and in turning checkpointing
# off (a third less compute per step) once the activations fit.
PRESETS: dict[str, dict] = {
    "Quick test (minutes, checks the pipeline)": {"max_steps": 30, "rank": 8, "alpha": 8.0, "clip_seconds": 10.0,
                                                  "checkpoint_every": 10, "keep_last": 2},
    "8 GB GPU": {"rank": 32, "alpha": 32.0, "clip_seconds": 60.0, "batch_size": 1, "grad_accum": 4,
                 "gradient_checkpointing": True, "optimizer": "adamw_8bit"},
    "12 GB GPU": {"rank": 64, "alpha": 64.0, "clip_seconds": 120.0, "batch_size": 1, "grad_accum": 2,
                  "gradient_checkpointing": True, "optimizer": "adamw_8bit"},
    "16 GB GPU": {"rank": 64, "alpha": 64.0, "clip_seconds": 60.0, "batch_size": 1, "grad_accum": 2,
                  "gradient_checkpointing": False, "optimizer": "adamw_8bit"},
    "24+ GB GPU": {"rank": 64, "alpha": 64.0, "clip_seconds": 60.0, "batch_size": 2, "grad_accum": 1,
                   "gradient_checkpointing": False, "optimizer": "adamw_8bit"},
    "XL model, 16+ GB GPU": {"rank": 64, "alpha": 64.0, "clip_seconds": 60.0, "batch_size": 1, "grad_accum": 2,
                             "gradient_checkpointing": True, "optimizer": "adamw_8bit"},
}
PRESET_MODEL_SIZE = {"XL model, 16+ GB GPU": "XL"}  # the others are measured on the 2B DiT
PRESET_HEADROOM_GB = 2.0
# measured allocator peak per preset, GB (bench/real_size.py --presets); shown in the preset picker
PRESET_PEAK_GB: dict[str, float] = {
    "Quick test (minutes, checks the pipeline)": 3.10, "8 GB GPU": 3.37, "12 GB GPU": 3.75, "16 GB GPU": 7.63,
    "24+ GB GPU": 11.99, "XL model, 16+ GB GPU": 8.87,
}

# Added to a measured peak before comparing it with a GPU's memory:
# - the CUDA context (driver state, kernels, cuBLAS handles), which max_memory_allocated never counts:
#   "~700+MB" depending on CUDA version and device (discuss.pytorch.org/t/high-gpu-memory-overhead/81330),
#   723 MiB for one tiny tensor (discuss.pytorch.org/t/what-is-the-reason-for-pytorchs-gpu-memory-floor/73021);
# - the caching allocator's blocks that are reserved but not allocated (fragmentation). An assumption
#   until bench/gpu_check.py has measured reserved/allocated on a real run; it prints both.
CUDA_CONTEXT_MB = 750
ALLOCATOR_SLACK = 0.10

# Peak dense tensor throughput, TFLOP/s: (bf16/fp16, fp32) per GPU a Space rents, from NVIDIA's
# datasheets (the sparsity figures halved). T4 has no bf16: its fp16 figure. A10G is AWS's own part with
# no NVIDIA datasheet; 70 is the tensor figure from Baseten's A10-vs-A10G comparison (the A10's is 125).
# Longer names first: "H100 PCIe" must match before "H100".
GPU_PEAK_TFLOPS: dict[str, tuple[float, float]] = {
    "H200": (989.0, 67.0), "H100 PCIe": (756.0, 51.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6), "L4": (121.0, 30.3), "A10G": (70.0, 31.2), "T4": (65.0, 8.1),
}
# Share of peak a LoRA step reaches (model FLOPs utilisation). An assumption: batch-1 steps of a
# 2-4 B DiT with many small LoRA matmuls; bench/gpu_check.py prints the measured MFU to replace it.
ASSUMED_MFU = 0.35


@dataclass
class Check:
    level: str  # ok | info | warning | error
    text: str


@dataclass
class Preflight:
    checks: list[Check] = field(default_factory=list)
    mem_gb: float | None = None        # predicted GPU memory: measured peak + context + slack
    gpu_gb: float | None = None
    minutes: float | None = None
    estimate: str = "none"             # ready | measuring | missing | failed | none | cpu
    estimate_text: str = ""            # one line for the page: what we know about memory and time
    request: dict | None = None        # what to measure when `estimate` is missing
    mem_text: str = ""                 # memory in words off CUDA (on CUDA: estimate_text)
    time_text: str = ""                # the time estimate in words, for the device at hand (or why none)

    @property
    def blocked(self) -> bool:
        return any(c.level == "error" for c in self.checks)

    def add(self, level: str, text: str) -> None:
        self.checks.append(Check(level, text))


def preset_label(name: str) -> str:
    """A preset's name with its measured peak, for the preset picker."""
    gb = PRESET_PEAK_GB.get(name)
    return f"{name} (measured peak {gb:.1f} GB)" if gb else name


def gpu_total_gb(peak_allocated_mb: float) -> float:
    """What a measured allocator peak occupies on the card: plus slack, plus the CUDA context."""
    return round((peak_allocated_mb * (1 + ALLOCATOR_SLACK) + CUDA_CONTEXT_MB) / 1024, 1)


def peak_tflops(gpu_name: str, dtype: str) -> float | None:
    for name, (half, single) in GPU_PEAK_TFLOPS.items():
        if name in (gpu_name or ""):
            return single if dtype == "fp32" else half
    return None


def estimate_minutes(flops_per_micro_batch: float, cfg: dict, total_steps: int, gpu_name: str,
                     dtype: str) -> float | None:
    """Training time from measured FLOPs: steps x micro-batches x FLOPs / (peak x utilisation x GPUs).

    With `gpus` N each GPU runs grad_accum / N of a step's micro-batches (the global batch stays the
    config's), so the time divides by N; the one gradient all-reduce per step is left out."""
    tflops = peak_tflops(gpu_name, dtype)
    if tflops is None:
        return None
    flops = flops_per_micro_batch * int(cfg.get("grad_accum", 1)) * total_steps
    return round(flops / (tflops * 1e12 * ASSUMED_MFU * ranks(cfg)) / 60, 1)


def ranks(cfg: dict) -> int:
    """The data-parallel ranks a config asks for (`gpus`; unset or 0 is one)."""
    return max(1, int(cfg.get("gpus", 1) or 1))


def predicted_peak_mb(model_id: str, cfg_dict: dict, *, dtype: str | None = None, seconds: float | None = None,
                      rows: list[dict] | None = None) -> float | None:
    """The measured allocator peak (MB) for this run, comparable to a step event's gpu_mem_peak_mb
    (torch.cuda.max_memory_allocated), or None when it has not been measured. Reads the cache only.

    `dtype` is the base weights' dtype the run uses (bf16 | fp16 | fp32); `seconds` the longest
    sample it feeds (else taken from the config and `rows`).
    """
    request = estimates.request_for(model_id, cfg_dict, rows, dtype=dtype, seconds=seconds)
    result = estimates.read(request) if request else None
    return result.get("peak_allocated_mb") if result else None


def _estimate(pf: Preflight, model: str, cfg: dict, rows: list[dict], total_steps: int | None, dev: dict) -> None:
    if dev["kind"] != "cuda":
        pf.estimate = "cpu"
        pf.estimate_text = ("No GPU estimate: memory and time are estimated for NVIDIA GPUs and this machine has "
                            "none. Each preset names the peak measured for it at the real size.")
        pf.add("info", pf.estimate_text)
        return
    gpu_name = (dev.get("gpus") or [{}])[0].get("name", "")
    dtype = estimates.dtype_for(cfg.get("device", "auto"), gpu_name)
    pf.request = estimates.request_for(model, cfg, rows, dtype=dtype)
    if pf.request is None:
        pf.estimate, pf.estimate_text = "none", f"No estimate: the shape of {model} is unknown until it is downloaded."
        pf.add("info", pf.estimate_text)
        return
    result = estimates.read(pf.request)
    if result is None:
        job = estimates.job_for(pf.request)
        if job is not None and job.status in ("failed", "died"):
            pf.estimate, pf.estimate_text = "failed", f"No estimate: the estimate job {job.status} ({job.detail})."
            pf.add("warning", pf.estimate_text)
        else:
            pf.estimate = "measuring" if job is not None and job.active else "missing"
            pf.estimate_text = "GPU memory and time: measuring…"
        return
    if result.get("error"):
        pf.estimate, pf.estimate_text = "failed", f"No estimate: measuring failed ({result['error']})."
        pf.add("warning", pf.estimate_text)
        return
    pf.estimate = "ready"
    pf.mem_gb = gpu_total_gb(result["peak_allocated_mb"])
    if total_steps:
        pf.minutes = estimate_minutes(result["flops_per_micro_batch"], cfg, total_steps, gpu_name, dtype)
    peak = result["peak_allocated_mb"] / 1024
    n = ranks(cfg)
    on = f"{n} × the {gpu_name}" if n > 1 else f"the {gpu_name}"
    time_text = f"~{pf.minutes:.0f} min at {ASSUMED_MFU:.0%} of {on}'s peak" if pf.minutes is not None \
        else f"no time estimate (no throughput figure for {gpu_name or 'this GPU'})"
    pf.estimate_text = (f"Measured peak {peak:.1f} GB ({dtype}); about {pf.mem_gb} GB of the card with the CUDA "
                        f"context; {time_text}.")
    if pf.gpu_gb:
        if pf.mem_gb > pf.gpu_gb:
            pf.add("error", f"Needs about {pf.mem_gb} GB of GPU memory, the GPU has {pf.gpu_gb} GB. Lower the "
                   "clip length or rank, use batch size 1, or turn on gradient checkpointing.")
        elif pf.mem_gb > 0.9 * pf.gpu_gb:
            pf.add("warning", f"Needs about {pf.mem_gb} of {pf.gpu_gb} GB GPU memory: tight; it may run out.")
        else:
            pf.add("ok", f"Needs about {pf.mem_gb} of {pf.gpu_gb} GB GPU memory (measured).")


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
    wanted, have = ranks(cfg), len(dev.get("gpus") or [])
    if wanted > 1 and wanted > have:
        pf.add("error", f"gpus {wanted}: this machine has {have} NVIDIA GPU(s); data-parallel training needs one "
               f"per rank. Set gpus to {max(1, have)}.")

    pf.gpu_gb = dev.get("gpu_mem_total_gb")
    _estimate(pf, model, cfg, rows, total_steps, dev)
    if dev["kind"] != "cuda":
        pf.mem_text = (f"Memory: this run uses the machine's RAM ({dev.get('ram_available_gb')} of "
                       f"{dev.get('ram_total_gb')} GB free); there is no GPU memory to estimate.")
    if total_steps:
        _estimate_time(pf, model, cfg, total_steps, dev)
    if (short := schedule_check(cfg, s["usable"], total_steps)) is not None:
        pf.checks.append(short)
    pf.checks.extend(adapter_checks(cfg))
    pf.checks.extend(base_quant_checks(cfg, dev["kind"]))
    return pf


def adapter_checks(cfg: dict) -> list[Check]:
    """What each consumer can read of the chosen adapter type, said before training (tests/train/test_adapter_types.py
    loads each of them the way these sentences say)."""
    kind, out = cfg.get("adapter_type", "lora"), []
    if kind == "lokr":
        out.append(Check("warning", "LoKr: diffusers' `pipe.load_lora_weights` cannot read it (it takes LoRA keys "
                                    "only); load it with `pipe.transformer.load_lora_adapter(final_dir, weight_name="
                                    "\"pytorch_lora_weights.safetensors\", prefix=\"transformer\")`, or set a merged "
                                    "scale to also get a whole pipeline. The ACE-Step UI reads it through peft; tools "
                                    "that read only plain LoRA files cannot use it. The memory and time estimates "
                                    "are measured with LoRA."))
    elif kind == "dora":
        out.append(Check("info", "DoRA: diffusers' `load_lora_weights` and the ACE-Step UI (peft) read it; tools that "
                                 "read only plain LoRA files may not. Each step costs more than LoRA's, and the memory "
                                 "and time estimates are measured with LoRA."))
    if cfg.get("merged_scale"):
        out.append(Check("info", f"After training, a whole pipeline with the adapter fused at scale "
                                 f"{cfg['merged_scale']:g} is saved in the run's merged/ folder: as large as the base "
                                 "model on disk."))
    return out


# base_quant -> (the pip package it needs, the device kinds it runs on). torchao's int8 weight-only matmul is
# plain PyTorch ops (CPU and any CUDA GPU); on Apple's MPS it has not been run, so it is not offered there.
BASE_QUANT_SUPPORT = {"int8": ("torchao", ("cpu", "cuda"))}


def base_quant_problem(base_quant: str, device_kind: str) -> str | None:
    """Why `base_quant` cannot run on this kind of device (cuda | mps | cpu), or None. The trainer asks too,
    before it loads anything."""
    import importlib.util

    if base_quant not in BASE_QUANT_SUPPORT:
        return None
    package, kinds = BASE_QUANT_SUPPORT[base_quant]
    if device_kind not in kinds:
        return (f"base_quant {base_quant!r} runs on {' and '.join(k.upper() for k in kinds)} only, not on "
                f"{device_kind.upper()}: set the base weights to 'none' (full precision).")
    if importlib.util.find_spec(package) is None:
        return (f"base_quant {base_quant!r} needs the {package} package, which is not installed here: "
                f"pip install -r requirements.txt, or set the base weights to 'none'.")
    return None


def base_quant_checks(cfg: dict, device_kind: str) -> list[Check]:
    mode = cfg.get("base_quant", "none")
    if mode == "none":
        return []
    if problem := base_quant_problem(mode, device_kind):
        return [Check("error", problem)]
    out = [Check("info", "int8 base: the frozen DiT blocks' weights in int8 (torchao), half their bf16 memory; the "
                         "adapter trains in fp32 and exports exactly as without it. Each step spends a little time "
                         "converting weights back, and the base's rounding shifts the loss slightly.")]
    if not cfg.get("gradient_checkpointing", True):
        out.append(Check("warning", "int8 base without gradient checkpointing: backward keeps a full-precision "
                                    "copy of every block's weights, so the step's peak is higher than a bf16 "
                                    "base's (measured: bench/real_size.py). Turn gradient checkpointing on to gain "
                                    "the memory."))
    return out


def _estimate_time(pf: Preflight, model: str, cfg: dict, total_steps: int, dev: dict) -> None:
    """A past run of this model on this device beats FLOP arithmetic; on a CPU arithmetic means nothing."""
    found = speed.estimate_s(speed.measured_runs(runs.list_runs()), model, dev["kind"], cfg, total_steps)
    if found is not None:
        secs, m = found
        pf.minutes = round(secs / 60, 1)
        pf.time_text = (f"Time: about {_minutes(secs)}, measured on this machine from {m.run_id} "
                        f"({m.s_per_step:.2f} s/step, {m.setup_s:.0f} s to load and preprocess).")
    elif pf.minutes is not None:  # from the measured FLOPs (_estimate)
        pf.time_text = (f"Time: roughly {_minutes(pf.minutes * 60)} of training at {ASSUMED_MFU:.0%} of the GPU's "
                        "peak (loading and preprocessing come on top); the live view shows the measured ETA.")
    elif dev["kind"] == "cuda":
        pf.time_text = "Time: no estimate until the GPU memory and FLOPs are measured."
    else:
        pf.time_text = (f"Time: no estimate yet for this model on this {dev['kind'].upper()}: nothing has been "
                        "measured here. After the first steps the live view shows the measured ETA, and "
                        "the next run's estimate comes from this one.")


def _minutes(secs: float) -> str:
    return "under a minute" if secs < 60 else f"{secs / 60:.0f} min" if secs < 5400 else f"{secs / 3600:.1f} h"


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
