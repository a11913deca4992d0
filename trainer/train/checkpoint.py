"""Checkpoints: exactly what a resume needs (STYLE.md §12), in `checkpoints/step-NNNNNN/`.

    adapter_model.safetensors   LoRA tensors, diffusers key names, fp32
    training_state.pt           optimizer, scheduler, RNG states (python, numpy, torch, cuda)
    meta.json                   step, epoch, base model id, config + its hash, adapter key count + sha256

A checkpoint is written into a temp folder and renamed into place, so a crash mid-save leaves the
previous checkpoints intact and never a half-written `step-*` folder. Only the last K are kept.
"""
from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from state.fsutil import file_sha256, read_json, staged_dir, write_json
from trainer.train.adapter import AdapterMismatch, adapter_state, load_adapter_strict

CKPT_DIR = "checkpoints"
ADAPTER_FILE = "adapter_model.safetensors"
STATE_FILE = "training_state.pt"
META_FILE = "meta.json"
_STEP_DIR = re.compile(r"^step-(\d{6,})$")


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(job_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a folder counts only once its meta.json exists)."""
    root = Path(job_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / META_FILE).is_file()]
    return [p for _, p in sorted(found)]


def find_checkpoint(job_dir: Path, which: str) -> Path:
    """'latest', a folder name under checkpoints/ ('step-000040'), or a path to a checkpoint folder."""
    if which == "latest":
        ckpts = list_checkpoints(job_dir)
        if not ckpts:
            raise FileNotFoundError(f"No checkpoint to resume from in {Path(job_dir) / CKPT_DIR}.")
        return ckpts[-1]
    for cand in (Path(job_dir) / CKPT_DIR / which, Path(which).expanduser()):
        if (cand / META_FILE).is_file():
            return cand.resolve()
    raise FileNotFoundError(f"Checkpoint {which!r} not found (looked in {Path(job_dir) / CKPT_DIR} and at that path).")


def read_meta(ckpt: Path) -> dict:
    meta = read_json(Path(ckpt) / META_FILE)
    if not isinstance(meta, dict) or "step" not in meta:
        raise AdapterMismatch(f"{ckpt} has no readable {META_FILE}; it is not a checkpoint this trainer wrote.")
    return meta


def save_checkpoint(job_dir: Path, step: int, epoch: float, transformer, optimizer, scheduler,
                    cfg, keep_last: int) -> Path:
    root = Path(job_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    if (final / META_FILE).is_file():
        return final  # already saved at this step (periodic save and save_now coincided)
    with staged_dir(final, prefix=f".tmp-{final.name}-") as tmp:
        tensors = adapter_state(transformer)
        save_file(tensors, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state()}, tmp / STATE_FILE)
        write_json(tmp / META_FILE, {
            "step": step, "epoch": epoch, "model_id": cfg.model_id, "config_hash": cfg.hash(),
            "config": cfg.to_dict(), "adapter_tensors": len(tensors),
            "adapter_sha256": file_sha256(tmp / ADAPTER_FILE), "saved_at": time.time(),
        })
    prune(job_dir, keep_last)
    return final


def prune(job_dir: Path, keep_last: int) -> None:
    ckpts = list_checkpoints(job_dir)
    for old in ckpts[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in (Path(job_dir) / CKPT_DIR).glob(".tmp-step-*"):
        if time.time() - stale.stat().st_mtime > 3600:  # a save that crashed long ago, not one in progress
            shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(ckpt: Path, transformer, optimizer, scheduler, model_id: str) -> dict:
    """Restore adapter, optimizer, scheduler and RNG; returns meta plus `adapter_tensors_loaded`.

    Refuses (AdapterMismatch) when the base model differs, the adapter file was altered, or its
    keys/shapes do not match the model's LoRA layers exactly. Nothing is changed before those checks.
    """
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    if meta.get("model_id") != model_id:
        raise AdapterMismatch(f"Checkpoint {ckpt.name} was trained on base model {meta.get('model_id')!r}, "
                              f"not {model_id!r}. Resume with the same base model.")
    if file_sha256(ckpt / ADAPTER_FILE) != meta.get("adapter_sha256"):
        raise AdapterMismatch(f"{ckpt / ADAPTER_FILE} does not match the checksum recorded when it was saved "
                              "(altered or corrupted). Resume from another checkpoint.")
    tensors = load_file(str(ckpt / ADAPTER_FILE))
    state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    n = load_adapter_strict(transformer, tensors)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return {**meta, "adapter_tensors_loaded": n}


def rng_state() -> dict:
    """Every generator the loop draws from, in types `torch.load(weights_only=True)` accepts."""
    py = random.getstate()
    npst = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npst[0], torch.from_numpy(npst[1].astype(np.int64)), int(npst[2]), int(npst[3]), float(npst[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(s: dict) -> None:
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
