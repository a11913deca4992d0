"""Train a LoRA adapter for ACE-Step 1.5: the `train` job kind (ACESTEP.md §3-4, DESIGN.md).

From the dashboard the run folder already holds config.json. Headless, from any paths:

    python trainer/run.py train --job-dir lora_output/my-run \\
        --config my_config.json --manifest datasets/my-set/manifest.jsonl

    --resume latest | step-000400 | /path/to/checkpoint   continue a stopped or crashed run
    --after OTHER_RUN_ID                                  wait until lora_output/OTHER_RUN_ID has ended

The config is validated before anything loads and written (resolved) to <job-dir>/config.json.
Progress goes to <job-dir>/events.jsonl; `control/stop` (or SIGTERM) finishes the current step,
saves a checkpoint and ends the run as stopped; `control/save_now` saves without stopping.
Reads top to bottom: setup, then one loop; side concerns are one-line calls.
"""
from __future__ import annotations

import json
import math
import random
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from state import jobs, paths
from state.fsutil import atomic_write_text, write_json
from state.train.config import ADAPTER_FIELDS, ConfigError, TrainConfig, make_plan
from trainer.listen.previews import Sampler
from trainer.train.adapter import AdapterMismatch, add_lora
from trainer.train.checkpoint import find_checkpoint, list_checkpoints, load_checkpoint, read_meta, save_checkpoint
from trainer.train.export import export_final
from trainer.train.meter import StepMeter
from trainer.train.objective import Objective, compute_loss, make_batch

QUEUE_POLL_S = 0.5


class NonFiniteLoss(FloatingPointError):
    """Loss or gradients became NaN/Inf; the message says which step and which checkpoint is good."""


def job_train(ctx, args) -> str:
    cfg, ckpt = resolve_config(ctx, args)  # refuses bad values before anything loads
    if args.after and not wait_for_run(ctx, args.after):
        return "stopped"
    return train(ctx, cfg, ckpt)


def train(ctx, cfg: TrainConfig, ckpt: Path | None) -> str:
    from transformers import get_scheduler

    from trainer.dataset.preprocess import free_encoders, preprocess_rows
    from trainer.model.load import load_pipeline, pick_device_dtype, resolve_model_dir

    # -- data and model -------------------------------------------------------------------------
    device, dtype = pick_device_dtype(None if cfg.device == "auto" else cfg.device)
    rows = dataset_rows(ctx.job_dir, cfg, resuming=ckpt is not None)
    ctx.phase("load", 0, 1)
    pipe = load_pipeline(cfg.model_id, device=device, dtype=dtype)
    ctx.phase("load", 1, 1)
    tracks = preprocess_rows(pipe, rows, cfg.model_id, ctx=ctx, max_seconds=cfg.max_seconds,
                             clip_seconds=cfg.clip_seconds)
    null_emb = pipe.condition_encoder.null_condition_emb.detach().to(device)  # (1, 1, H): dropout's "no condition"
    clip_frames = round(cfg.clip_seconds * pipe.latents_per_second)
    free_encoders(pipe)  # VAE and text encoder are done: their outputs are in `tracks`
    transformer = pipe.transformer
    seed_everything(cfg.seed)
    params = add_lora(transformer, cfg)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    obj = Objective.for_model(cfg, transformer)
    plan = make_plan(cfg, len(tracks))

    # -- optimizer, schedule, resume ------------------------------------------------------------
    optimizer = make_optimizer(params, cfg)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=plan.warmup_steps,
                              num_training_steps=plan.total_steps)
    step = 0
    if ckpt is not None:
        restored = load_checkpoint(ckpt, transformer, optimizer, scheduler, cfg.model_id)
        step = restored["step"]
        ctx.emit("resumed", step=step, epoch=restored["epoch"], checkpoint=str(ckpt),
                 adapter_tensors=restored["adapter_tensors_loaded"])
    ctx.emit("start", config=cfg.to_dict(), device=str(device), dtype=str(dtype).replace("torch.", ""),
             torch=torch.__version__, cuda=torch.version.cuda, dataset_size=plan.dataset_size,
             total_steps=plan.total_steps, warmup_steps=plan.warmup_steps, steps_per_epoch=plan.steps_per_epoch,
             start_step=step, trainable_params=sum(p.numel() for p in params), objective=vars(obj))
    sampler = Sampler(ctx, cfg, transformer)  # previews render in separate `sample` jobs (ACESTEP.md §4)
    sampler.maybe(step)  # the step-0 baseline, when sampling is on
    autocast = torch.autocast("cuda", dtype=dtype) if device.type == "cuda" and dtype != torch.float32 \
        else nullcontext()

    def save(reason: str) -> None:  # reads `step` when called: every save below is one line
        path = save_checkpoint(ctx.job_dir, step, epoch_at(step, cfg, plan), transformer, optimizer, scheduler,
                               cfg, cfg.keep_last)
        ctx.emit("checkpoint", step=step, path=str(path), reason=reason)

    def emit_step() -> None:  # loss = mean of the steps since the previous step event
        ctx.emit("step", **meter.report(step, epoch_at(step, cfg, plan), scheduler.get_last_lr()[0], grad_norm))

    # -- the loop -------------------------------------------------------------------------------
    ctx.phase("train", step, plan.total_steps)
    meter = StepMeter(plan.total_steps, step, device)
    while step < plan.total_steps:
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            idx = sample_indices(step, micro, cfg, plan.dataset_size)
            batch = make_batch([tracks[i] for i in idx], clip_frames, device)
            with autocast:
                loss = compute_loss(transformer, batch, null_emb, obj, dtype)
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.item()  # a sync point, but the NaN check needs the value every step
        loss_val = loss_sum / cfg.grad_accum
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or math.inf).item()
        if not (math.isfinite(loss_val) and math.isfinite(grad_norm)):
            raise NonFiniteLoss(nan_message(ctx.job_dir, step + 1, loss_val, grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        meter.add(loss_val, plan.samples_per_step)
        if meter.due() or step == plan.total_steps:
            emit_step()
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            save("periodic")
        if ctx.take_flag("save_now"):
            save("save_now")
        sampler.maybe(step)
        if ctx.stop_requested():
            if meter.n:
                emit_step()
            save("stop")
            sampler.finish(step, stopping=True)
            return "stopped"

    # -- export ---------------------------------------------------------------------------------
    ctx.phase("save", 0, 1)
    final = export_final(ctx.job_dir, transformer, cfg, steps=step, dataset_size=plan.dataset_size,
                         model_dir=resolve_model_dir(cfg.model_id))
    ctx.phase("save", 1, 1, final_dir=str(final))
    sampler.finish(step)  # the last step's preview, then wait: every `sample` event lands before `end`
    return "completed"


# ---- helpers beside the loop --------------------------------------------------------------------

def resolve_config(ctx, args) -> tuple[TrainConfig, Path | None]:
    """The config for this run, the checkpoint to resume from, both checked; writes config.json.

    On resume the adapter-defining fields (base model, rank, alpha, targets) come from the
    checkpoint: a different base model is refused, other differences are a warning.
    """
    job_dir = Path(ctx.job_dir)
    cfg = TrainConfig.load(args.config or job_dir / "config.json")
    if args.manifest:
        cfg = cfg.replace(manifest=str(Path(args.manifest).expanduser().resolve()))
    ckpt = None
    if args.resume:
        ckpt = find_checkpoint(job_dir, args.resume)
        saved = read_meta(ckpt)["config"]
        if saved["model_id"] != cfg.model_id:
            raise AdapterMismatch(f"Checkpoint {ckpt.name} was trained on {saved['model_id']!r}, but the config "
                                  f"names {cfg.model_id!r}. Resume with the same base model.")
        forced = {k: saved[k] for k in ADAPTER_FIELDS if saved.get(k) != getattr(cfg, k)}
        if forced:
            ctx.emit("warning", message=f"Using the checkpoint's adapter settings {forced} instead of the config's.")
            cfg = cfg.replace(**forced)
        changed = sorted(k for k, v in cfg.to_dict().items() if k in saved and saved[k] != v and k != "manifest")
        if changed:  # allowed (nanoGPT: only the architecture is forced), but say so: the run is no longer one recipe
            ctx.emit("warning", message=f"Resuming with settings changed since {ckpt.name}: {', '.join(changed)}.")
    has_snapshot = (job_dir / "dataset.jsonl").is_file()
    if not (ckpt is not None and has_snapshot) and not Path(cfg.manifest or "").is_file():
        raise ConfigError(f"manifest: no dataset manifest at {cfg.manifest!r}. Pass --manifest PATH "
                          "(a datasets/<name>/manifest.jsonl) or set `manifest` in the config.")
    write_json(job_dir / "config.json", cfg.to_dict())
    return cfg, ckpt


def dataset_rows(job_dir: Path, cfg: TrainConfig, resuming: bool) -> list[dict]:
    """Usable manifest rows, snapshotted to dataset.jsonl; a resume reuses its run's snapshot."""
    from trainer.dataset.preprocess import read_manifest

    snapshot = Path(job_dir) / "dataset.jsonl"
    if resuming and snapshot.is_file():
        return read_manifest(snapshot)
    rows = [r for r in read_manifest(Path(cfg.manifest)) if r.get("status", "ok") != "error"]
    if not rows:
        raise ConfigError(f"manifest: {cfg.manifest} has no usable tracks (all missing or marked error).")
    atomic_write_text(snapshot, "".join(json.dumps({k: v for k, v in r.items() if not k.startswith("_")},
                                                   ensure_ascii=False) + "\n" for r in rows))
    return rows


def wait_for_run(ctx, run_id: str) -> bool:
    """Queue behind another run: True once it has ended (any way), False if we were stopped first."""
    prev = Path(ctx.job_dir).parent / paths.check_name(run_id, "run id")
    if not prev.is_dir():
        raise FileNotFoundError(f"--after {run_id}: no run folder {prev}.")
    if not ctx.wait_for(prev, QUEUE_POLL_S):
        return False
    ctx.emit("phase", name="load", done=0, total=1, eta_s=None, after_status=jobs.status(prev).status)
    return True


def make_optimizer(params: list, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw_8bit":
        import bitsandbytes as bnb  # 8-bit states: ~4x less optimizer memory; runs on CPU too
        return bnb.optim.AdamW8bit(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def sample_indices(step: int, micro: int, cfg: TrainConfig, n: int) -> list[int]:
    """Which tracks a micro-batch uses: a fixed function of the step, so a resume replays the same order.

    The sample stream is epoch after epoch of seeded permutations; batches may span an epoch edge.
    """
    start = (step * cfg.grad_accum + micro) * cfg.batch_size
    return [_epoch_order(cfg.seed, k // n, n)[k % n] for k in range(start, start + cfg.batch_size)]


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def epoch_at(step: int, cfg: TrainConfig, plan) -> float:
    return step * plan.samples_per_step / plan.dataset_size


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def nan_message(job_dir: Path, step: int, loss: float, grad_norm: float) -> str:
    ckpts = list_checkpoints(job_dir)
    good = f"the last good checkpoint is {ckpts[-1].name}" if ckpts else "no checkpoint was saved yet"
    return (f"The loss became NaN/Inf at step {step} (loss={loss}, grad_norm={grad_norm}); the step was not "
            f"applied and {good}.")
