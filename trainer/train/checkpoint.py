"""Checkpoints: exactly what a resume needs (STYLE.md §12), in `checkpoints/step-NNNNNN/`.

    adapter_model.safetensors   LoRA tensors, diffusers key names, fp32
    training_state.pt           optimizer, scheduler, RNG states, loss scaler, validation best, EMA
    meta.json                   step, epoch, base model id, config + its hash, adapter key count + sha256

A checkpoint is written into a temp folder and renamed into place, so a crash mid-save leaves the
previous checkpoints intact and never a half-written `step-*` folder. Only the last K are kept, plus
the best by validation loss (`checkpoints/best.json` names it), whatever K says.

Resuming from a checkpoint that is not the newest forks the run: the later checkpoints belong to a
branch that will never be continued, so they move aside into `checkpoints/abandoned-<time>/`, and
neither "resume latest" nor a save at the same step can pick them up again.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from state import jobs
from state.fsutil import atomic_write_text, file_sha256, read_json_object, staged_dir, write_json
from trainer.train.adapter import AdapterMismatch, adapter_state, load_adapter_strict

CKPT_DIR = "checkpoints"
ADAPTER_FILE = "adapter_model.safetensors"
STATE_FILE = "training_state.pt"
META_FILE = "meta.json"
BEST_FILE = "best.json"
_STEP_DIR = re.compile(r"^step-(\d{6,})$")
_TMP_PREFIX = ".tmp-step-"


class CheckpointDamaged(AdapterMismatch):
    """A checkpoint folder whose files cannot be trusted; the message names the file and the reason."""


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def step_of(ckpt: Path) -> int:
    m = _STEP_DIR.match(Path(ckpt).name)
    if m is None:
        raise ValueError(f"{ckpt} is not a step-NNNNNN checkpoint folder")
    return int(m.group(1))


def list_checkpoints(job_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a folder counts only once its meta.json exists)."""
    root = Path(job_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / META_FILE).is_file()]
    return [p for _, p in sorted(found)]


def find_checkpoint(job_dir: Path, which: str) -> tuple[Path, list[str]]:
    """The checkpoint to resume from and, for 'latest', the newer ones it skipped with the reason.

    `which`: 'latest' (the newest checkpoint that verifies), a folder name under checkpoints/
    ('step-000040'), or a path to a checkpoint folder (which must verify).
    """
    if which == "latest":
        skipped = []
        for ckpt in reversed(list_checkpoints(job_dir)):
            try:
                verify(ckpt)
                return ckpt, skipped
            except CheckpointDamaged as exc:
                skipped.append(f"{ckpt.name}: {exc}")
        where = Path(job_dir) / CKPT_DIR
        raise FileNotFoundError(f"No checkpoint to resume from in {where}" +
                                (f" that verifies ({'; '.join(skipped)})." if skipped else "."))
    for cand in (Path(job_dir) / CKPT_DIR / which, Path(which).expanduser()):
        if (cand / META_FILE).is_file():
            verify(cand)
            return cand.resolve(), []
    raise FileNotFoundError(f"Checkpoint {which!r} not found (looked in {Path(job_dir) / CKPT_DIR} and at that path).")


def read_meta(ckpt: Path) -> dict:
    path = Path(ckpt) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointDamaged(f"{path} is missing; {Path(ckpt).name} is not a complete checkpoint.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointDamaged(f"{path} is damaged ({type(exc).__name__}: {exc}); resume from another "
                                "checkpoint.") from None
    if not isinstance(meta, dict) or "step" not in meta:
        raise CheckpointDamaged(f"{path} is not a checkpoint meta file this trainer wrote (no step).")
    return meta


def verify(ckpt: Path) -> dict:
    """meta.json readable, the adapter file matches its recorded checksum, the training state loads.
    Returns meta; raises CheckpointDamaged naming the file that failed."""
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    adapter = ckpt / ADAPTER_FILE
    if not adapter.is_file():
        raise CheckpointDamaged(f"{adapter} is missing.")
    if file_sha256(adapter) != meta.get("adapter_sha256"):
        raise CheckpointDamaged(f"{adapter} does not match the checksum recorded when it was saved "
                                "(altered or corrupted).")
    _load_state(ckpt)
    return meta


def _load_state(ckpt: Path) -> dict:
    path = Path(ckpt) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointDamaged(f"{path} is missing.") from None
    except Exception as exc:  # noqa: BLE001 - torch's own text suggests unsafe loading; never pass that on
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        if "weights_only" in reason or "Weights only" in reason:
            reason = "it is not a training state this trainer wrote (unexpected content)"
        raise CheckpointDamaged(f"{path} is damaged or truncated ({reason}); resume from another "
                                "checkpoint.") from None


def save_checkpoint(job_dir: Path, step: int, epoch: float, transformer, optimizer, scheduler,
                    cfg, keep_last: int, extra: dict | None = None) -> tuple[Path, bool]:
    """(path, written). written is False when this step already has a checkpoint of this branch
    (a periodic save and save_now at the same step); the caller says so rather than staying silent."""
    root = Path(job_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    if (final / META_FILE).is_file():
        return final, False
    with staged_dir(final, prefix=f"{_TMP_PREFIX}{step:06d}-") as tmp:
        tensors = adapter_state(transformer)
        save_file(tensors, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state(), **(extra or {})}, tmp / STATE_FILE)
        write_json(tmp / META_FILE, {
            "step": step, "epoch": epoch, "model_id": cfg.model_id, "config_hash": cfg.hash(),
            "config": cfg.to_dict(), "adapter_tensors": len(tensors),
            "adapter_sha256": file_sha256(tmp / ADAPTER_FILE), "saved_at": time.time(),
        })
    prune(job_dir, keep_last)
    return final, True


def mark_best(job_dir: Path, step: int, loss: float) -> None:
    atomic_write_text(Path(job_dir) / CKPT_DIR / BEST_FILE, json.dumps({"step": step, "loss": loss,
                                                                        "folder": step_dir_name(step)}))


def best_step(job_dir: Path) -> int | None:
    """The best checkpoint's step; None when there is none or best.json is damaged (nothing is then
    protected from pruning, which only costs the old best, never a crash)."""
    best, _damage = read_json_object(Path(job_dir) / CKPT_DIR / BEST_FILE)
    return best.get("step") if isinstance(best.get("step"), int) else None


def prune(job_dir: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints and the best one."""
    keep = best_step(job_dir)
    ckpts = list_checkpoints(job_dir)
    for old in ckpts[:-keep_last]:
        if step_of(old) != keep:
            shutil.rmtree(old, ignore_errors=True)


def remove_stale_temps(job_dir: Path) -> list[str]:
    """Half-written checkpoint folders of an interrupted save. Called when a run starts: the run's own
    folder has no other live job (its job.json names this process), so nobody is still writing them."""
    root = Path(job_dir) / CKPT_DIR
    owner = jobs.process_of(job_dir)
    if (owner is not None and owner.pid != os.getpid()) or not root.is_dir():
        return []
    removed = []
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale.name)
    return removed


def fork_at(job_dir: Path, step: int) -> Path | None:
    """Resuming from `step`: move every later checkpoint into checkpoints/abandoned-<time>/ (None if none)."""
    later = [c for c in list_checkpoints(job_dir) if step_of(c) > step]
    if not later:
        return None
    aside = Path(job_dir) / CKPT_DIR / time.strftime("abandoned-%Y%m%d-%H%M%S")
    n = 1
    while aside.exists():
        aside, n = aside.with_name(f"{aside.name.split('~')[0]}~{n}"), n + 1
    aside.mkdir(parents=True)
    for c in later:
        c.rename(aside / c.name)
    if (b := best_step(job_dir)) is not None and b > step:
        (Path(job_dir) / CKPT_DIR / BEST_FILE).rename(aside / BEST_FILE)
    return aside


def load_checkpoint(ckpt: Path, transformer, optimizer, scheduler, model_id: str) -> dict:
    """Restore adapter, optimizer, scheduler and RNG; returns meta plus `adapter_tensors_loaded` and
    the training state's other entries under `state` (scaler, validation best, EMA).

    Refuses (AdapterMismatch) when the base model differs, a file is damaged or altered, or the adapter's
    keys/shapes do not match the model's LoRA layers exactly. Nothing is changed before those checks.
    """
    ckpt = Path(ckpt)
    meta = verify(ckpt)
    if meta.get("model_id") != model_id:
        raise AdapterMismatch(f"Checkpoint {ckpt.name} was trained on base model {meta.get('model_id')!r}, "
                              f"not {model_id!r}. Resume with the same base model.")
    tensors = load_file(str(ckpt / ADAPTER_FILE))
    state = _load_state(ckpt)
    n = load_adapter_strict(transformer, tensors)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    rest = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "rng")}
    return {**meta, "adapter_tensors_loaded": n, "state": rest}


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
