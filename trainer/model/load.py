"""Choosing a device and dtype, resolving a model id to a folder, and loading the pipeline.

The table of known models lives in `state.model.catalog` (torch-free, shared with the dashboard).
"""
from __future__ import annotations

import platform
from pathlib import Path

import torch

from state import paths
from state.model.catalog import (  # noqa: F401 - re-exported for trainer code
    DEMO_MODEL_ID,
    INFERENCE_DEFAULTS,
    KNOWN_MODELS,
    ModelInfo,
    info_for,
    local_dir_name,
    variant_of,
)

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def pick_device_dtype(override: str | None = None) -> tuple[torch.device, torch.dtype]:
    """The device and the dtype for the frozen base weights.

    CUDA: bf16 when the GPU supports it (halves memory, same range as fp32), else fp16, which the
    trainer pairs with loss scaling (trainer/train/precision.py). LoRA weights stay fp32 regardless. MPS: fp32, because fp16 overflows in the
    VAE/attention on long inputs and MPS bf16 support depends on the macOS version. CPU: fp32
    (an explicit "cpu:fp16" runs the fp16 + loss-scaling path on the CPU, which is how it is tested).

    `override` is "cpu" | "cuda" | "cuda:1" | "mps", optionally with ":fp32|fp16|bf16"
    (e.g. "cuda:fp16", "cuda:1:bf16", "fp32").
    """
    dev_part, dtype_part = None, None
    for part in (override or "").split(":"):
        part = part.strip().lower()
        if not part:
            continue
        if part in _DTYPES:
            dtype_part = _DTYPES[part]
        elif part.isdigit() and dev_part:
            dev_part = f"{dev_part}:{part}"
        elif part in ("cpu", "cuda", "mps"):
            dev_part = part
        else:
            raise ValueError(f"Unknown device/dtype {part!r} in {override!r}: use cpu, cuda, mps, "
                             "optionally followed by :fp32, :fp16 or :bf16")
    if dev_part is None:
        dev_part = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    device = torch.device(dev_part)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA GPU is visible to PyTorch.")
    if device.type == "mps" and not _mps_available():
        raise RuntimeError("MPS was requested but this PyTorch build or machine has no MPS support.")
    if dtype_part is None:
        if device.type == "cuda":
            dtype_part = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype_part = torch.float32
    return device, dtype_part


def describe_device(device: torch.device | str | None = None) -> dict:
    """What the dashboard shows and the `start` event records about the compute device."""
    device = torch.device(device) if device is not None else pick_device_dtype()[0]
    info = {"type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "name": platform.processor() or platform.machine(), "total_memory_mb": None,
            "bf16": False, "default_dtype": str(pick_device_dtype(device.type)[1]).replace("torch.", "")}
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(name=props.name, index=idx, total_memory_mb=round(props.total_memory / 2**20),
                    capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    elif device.type == "mps":
        info.update(name="Apple GPU (MPS)", total_memory_mb=_system_memory_mb())
    else:
        info.update(total_memory_mb=_system_memory_mb(), threads=torch.get_num_threads(), bf16=True)
    return info


def _system_memory_mb() -> int | None:
    try:
        import psutil
        return round(psutil.virtual_memory().total / 2**20)
    except ImportError:
        return None


def resolve_model_dir(model_id_or_dir: str | Path) -> str:
    """A local folder to load from when there is one; otherwise the Hub id unchanged.

    Order: the demo id (built on first use), an existing folder, <workspace>/models/<org--name>
    (where the fetch job downloads or converts to), then the id itself for from_pretrained's own
    Hub cache; except a release-layout catalog id, which only works once fetched (and converted).
    """
    key = str(model_id_or_dir)
    if key == DEMO_MODEL_ID:
        from trainer.model.tiny import ensure_demo_model
        return str(ensure_demo_model())
    p = Path(key).expanduser()
    if p.is_dir():
        if not (p / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{p} is not a diffusers-format model folder (no model_index.json). If it is the original "
                "ACE-Step release layout (checkpoints/acestep-v15-*/), import it first (Models page → Import).")
        return str(p.resolve())
    local = paths.models_dir() / local_dir_name(key)
    if (local / "model_index.json").is_file():
        return str(local)
    if key in KNOWN_MODELS and KNOWN_MODELS[key].source == "original":
        # from_pretrained would look for a model_index.json this repo does not have
        raise FileNotFoundError(
            f"{key} is published in the original ACE-Step layout, so it is converted on download and "
            f"loaded from {local}, which is not there yet. Download it first (Train page → Download model, "
            f"or `python trainer/run.py fetch --job-dir DIR` with DIR/params.json holding {{\"model_id\": \"{key}\"}}).")
    return key


def load_pipeline(model_id_or_dir: str | Path, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None):
    """AceStepPipeline.from_pretrained on a folder or Hub id, moved to `device` in `dtype`."""
    from diffusers import AceStepPipeline

    if device is None or dtype is None:
        auto_device, auto_dtype = pick_device_dtype(None if device is None else str(torch.device(device)))
        device = auto_device if device is None else device
        dtype = auto_dtype if dtype is None else dtype
    source = resolve_model_dir(model_id_or_dir)
    extra = {}
    condition = _condition_encoder_with_own_silence(Path(source), dtype) if Path(source).is_dir() else None
    if condition is not None:
        extra["condition_encoder"] = condition
    pipe = AceStepPipeline.from_pretrained(source, dtype=dtype, **extra)
    pipe.to(torch.device(device))
    for module in (pipe.vae, pipe.text_encoder, pipe.transformer, pipe.condition_encoder):
        if module is not None:
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _condition_encoder_with_own_silence(folder: Path, dtype: torch.dtype):
    """Load a condition encoder whose silence latent is not the default 15000 frames, else None.

    from_pretrained refuses a buffer whose shape differs from the constructor's default, so an
    imported checkpoint with a shorter silence latent gets its buffer replaced, not loaded into.
    """
    from safetensors import safe_open

    weights = folder / "condition_encoder" / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), framework="pt") as f:
        if "silence_latent" not in f.keys():
            return None
        shape = f.get_slice("silence_latent").get_shape()
        if shape[1] == _DEFAULT_SILENCE_FRAMES:
            return None
        sd = {k: f.get_tensor(k) for k in f.keys()}
    from diffusers.pipelines.ace_step import AceStepConditionEncoder

    config = AceStepConditionEncoder.load_config(str(folder / "condition_encoder"))
    module = AceStepConditionEncoder.from_config(config)
    module.silence_latent = sd["silence_latent"]
    module.load_state_dict(sd, strict=True)
    return module.to(dtype).eval()


_DEFAULT_SILENCE_FRAMES = 15000  # AceStepConditionEncoder's constructor default buffer length
