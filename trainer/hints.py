"""Plain-words hints for failures users actually hit; shown next to the error in the dashboard."""
from __future__ import annotations

import errno


def hint_for(exc: BaseException) -> str | None:
    trainer_hint = _training_hint(exc)
    if trainer_hint:
        return trainer_hint
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if "out of memory" in low and ("cuda" in low or "gpu" in low or type(exc).__name__ == "OutOfMemoryError"):
        return ("The GPU ran out of memory. Lower the clip length or the LoRA rank, use batch size 1 "
                "with gradient accumulation, or turn on gradient checkpointing.")
    if isinstance(exc, MemoryError) or "cannot allocate memory" in low:
        return "The machine ran out of RAM. Close other programs, shorten the clip length, or use fewer/shorter tracks."
    if _disk_full(exc, low):
        return "The disk is full. Delete old runs or checkpoints (Runs → delete), lower keep-last-K, and resume."
    if "nan" in low and "loss" in low:
        return ("The loss became NaN. Lower the learning rate (e.g. 5e-5), keep max grad norm at 1.0, "
                "and resume from the last good checkpoint.")
    if "401" in low or "unauthorized" in low or "token" in low and "invalid" in low:
        return "The Hugging Face token is missing or invalid. Set HF_TOKEN or paste a token with read (or write) access."
    if "gated" in low:
        return "This repository is gated: accept its terms on huggingface.co, then use a token from that account."
    if "connection" in low or "resolve" in low and "host" in low or "offline" in low:
        return "No network connection to the Hugging Face Hub. Check the connection or use a local model folder."
    return None


def _disk_full(exc: BaseException, low: str) -> bool:
    # torch.save reports a full disk without an errno, from its zip writer: "unexpected pos N vs M"
    # (the bytes it meant to write did not all land) or "PytorchStreamWriter failed writing file".
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(s in low for s in ("no space left", "unexpected pos", "failed writing file",
                                  "disk quota exceeded"))


def _training_hint(exc: BaseException) -> str | None:
    """Hints for the trainer's own refusals (state/train/config.py, trainer/train/adapter.py, trainer/train/checkpoint.py)."""
    name = type(exc).__name__
    if name == "TrackerMissing":
        return "Install the package named above in this environment, or take the tracker out of report_to."
    if name == "ConfigError":
        return "Fix that field in the run's config.json (or the file given with --config) and start the run again."
    if name == "AdapterMismatch":
        return ("The checkpoint does not fit this model or was altered. Resume from another checkpoint "
                "(checkpoints/step-*), with the same base model and adapter settings, or start a new run.")
    if name == "FileNotFoundError" and "checkpoint" in str(exc).lower():
        return "Pick an existing checkpoint on the Runs page, or start the run from scratch without --resume."
    return None
