"""Train a LoRA adapter for ACE-Step 1.5: the `train` job kind (ACESTEP.md §3-4, DESIGN.md).

From the dashboard the run folder already holds config.json. Headless, from any paths:

    python trainer/run.py train --job-dir lora_output/my-run \\
        --config my_config.json --manifest datasets/my-set/manifest.jsonl

    --resume latest | step-000400 | /path/to/checkpoint   continue a stopped or crashed run
    --after OTHER_RUN_ID                                  wait until lora_output/OTHER_RUN_ID has ended
    --set rank=32 --set device=cuda:1                     change config fields (checked like the file)

The config is validated before anything loads and written (resolved) to <job-dir>/config.json.
Progress goes to <job-dir>/events.jsonl; `control/stop` (or one SIGTERM/Ctrl-C) finishes the current
step, saves a checkpoint, exports final/ and ends the run as stopped; `control/save_now` saves without
stopping. Reads top to bottom: setup, then one loop; side concerns are one-line calls.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
from pathlib import Path

import numpy as np
import torch

from state import jobs, paths
from state.fsutil import atomic_write_text, write_json
from state.train import shapes
from state.train.config import (
    FIXED_AT_RESUME,
    ConfigError,
    TrainConfig,
    make_plan,
    parse_overrides,
    validation_split,
)
from state.train.preflight import base_quant_problem, predicted_peak_mb
from trainer.job import StopNow
from trainer.listen.previews import Previews
from trainer.train.adapter import AdapterMismatch, adapter_state, add_lora
from trainer.train.batches import BatchOrder
from trainer.train.checkpoint import (
    find_checkpoint,
    fork_at,
    list_checkpoints,
    load_checkpoint,
    mark_best,
    read_meta,
    remove_stale_temps,
    save_checkpoint,
    step_of,
)
from trainer.train.distributed import PeerLost, Ranks
from trainer.train.export import export_final, export_merged
from trainer.train.meter import StepMeter
from trainer.train.objective import Objective, compute_loss, make_batch
from trainer.train.precision import Precision
from trainer.train.quant import quantize_base, weight_bytes
from trainer.train.trackers import trackers
from trainer.train.validation import Validator

QUEUE_POLL_S = 0.5
MAX_SKIPPED_IN_A_ROW = 25  # fp16 steps the loss scaler may skip in a row before the run is called diverged


class NonFiniteLoss(FloatingPointError):
    """Loss or gradients became NaN/Inf; the message says which step and which checkpoint is good."""


def job_train(ctx, args) -> str:
    if getattr(args, "ddp_worker", False):  # a torchrun rank: its launcher resolved config and checkpoint
        return train(ctx, TrainConfig.load(ctx.job_dir / "config.json"), Path(args.resume) if args.resume else None,
                     Ranks.from_env(worker=True))
    cfg, ckpt = resolve_config(ctx, args)  # refuses bad values before anything loads
    if args.after and not wait_for_run(ctx, args.after):
        return "stopped"
    if cfg.gpus > 1:
        from trainer.train.distributed import launch

        dataset_rows(ctx.job_dir, cfg, resuming=ckpt is not None)  # the snapshot every rank reads
        return launch(ctx, cfg, ckpt)
    return train(ctx, cfg, ckpt)


def train(ctx, cfg: TrainConfig, ckpt: Path | None, ranks: Ranks | None = None) -> str:
    from trainer.model.load import pick_device_dtype

    ranks = ranks or Ranks()
    device, dtype = pick_device_dtype(None if cfg.device == "auto" else cfg.device)
    device = ranks.place(device)
    if problem := base_quant_problem(cfg.base_quant, device.type):  # before minutes of loading, not after
        raise ConfigError(problem)
    precision = Precision.for_device(device, dtype)
    removed = remove_stale_temps(ctx.job_dir) if ranks.main else []
    if removed:
        ctx.emit("warning", message=f"Removed {len(removed)} half-written checkpoint folder(s) left by an "
                 f"interrupted save: {', '.join(removed)}.")
    rows = dataset_rows(ctx.job_dir, cfg, resuming=ckpt is not None or ranks.world > 1)
    # TensorBoard / trackio (report_to), fed rank 0's step and validation events; a missing package stops here
    with (trackers(ctx, cfg) if ranks.main else contextlib.nullcontext()), ranks.lease(ctx, device), \
            ranks.group(device):  # preprocessing, training and previews all use the GPU
        return _train(ctx, cfg, ckpt, rows, device, precision, ranks)


def _train(ctx, cfg: TrainConfig, ckpt: Path | None, rows: list[dict], device, precision: Precision,
           ranks: Ranks) -> str:
    from transformers import get_scheduler

    from trainer.dataset.preprocess import free_encoders, preprocess_rows
    from trainer.model.load import load_pipeline, resolve_model_dir

    # -- data and model: the encoders work first (on the GPU only for cache misses), then leave -----
    ctx.phase("load", 0, 1)
    pipe = load_pipeline(cfg.model_id, device="cpu", dtype=precision.base)
    ctx.phase("load", 1, 1)
    every = ranks.preprocess(lambda some, c: preprocess_rows(pipe, some, cfg.model_id, ctx=c, max_seconds=cfg.max_seconds,
                                                             clip_seconds=cfg.clip_seconds, device=device), rows, ctx)
    previews = Previews(ctx, cfg, precision)
    if ranks.main:  # previews are rank 0's, like every other output
        previews.prepare(pipe, cfg.model_id, device)
    null_emb = pipe.condition_encoder.null_condition_emb.detach().clone().to(device)  # (1, 1, H): "no condition"
    clip_frames = round(cfg.clip_seconds * pipe.latents_per_second)
    free_encoders(pipe, keep_condition_encoder=False)  # training needs only their cached outputs and null_emb
    quantize_base(pipe.transformer, cfg.base_quant, device)  # before peft wraps it, so only base weights
    transformer = pipe.transformer.to(device)
    base_mb = round(weight_bytes(transformer) / 2**20, 1)
    train_idx, val_idx, held_out = validation_split([str(t["id"] or i) for i, t in enumerate(every)], cfg)
    tracks = pinned([every[i] for i in train_idx], device)
    seed_everything(cfg.seed)
    params = add_lora(transformer, cfg)
    ranks.same_start(params)
    speed_setup(ctx, transformer, cfg, device)
    transformer.train()
    obj = Objective.for_model(cfg, transformer)
    plan = make_plan(cfg, len(tracks))
    order = BatchOrder(cfg.seed, [t["frames"] for t in tracks], cfg.batch_size, cfg.grad_accum,
                       bucket=clip_frames == 0)
    validator = Validator(cfg, [every[i] for i in val_idx], clip_frames, held_out, precision, device)
    ema = make_ema(params, cfg)

    # -- optimizer, schedule, resume ------------------------------------------------------------
    optimizer = make_optimizer(ctx, params, cfg, device)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=plan.warmup_steps,
                              num_training_steps=plan.total_steps)
    step = 0
    if ckpt is not None:
        step = resume(ctx, cfg, ckpt, transformer, optimizer, scheduler, precision, validator, ema, ranks.main)
    ctx.emit("start", config=cfg.to_dict(), device=str(device), dtype=str(precision.base).replace("torch.", ""),
             precision=precision.label, torch=torch.__version__, cuda=torch.version.cuda,
             dataset_size=plan.dataset_size, validation_tracks=len(val_idx), validation_held_out=held_out,
             total_steps=plan.total_steps, schedule_source=plan.source, warmup_steps=plan.warmup_steps,
             steps_per_epoch=plan.steps_per_epoch, start_step=step, trainable_params=sum(p.numel() for p in params),
             objective=vars(obj), base_weights_mb=base_mb,
             predicted_peak_mb=predicted_peak(cfg, device, precision, tracks, clip_frames))

    def save(reason: str) -> None:  # reads `step` when called: every save below is one line
        if not ranks.main:  # the state is the same on every rank: rank 0's is saved
            return
        with ctx.critical("saving a checkpoint"):
            path, written = save_checkpoint(ctx.job_dir, step, order.epoch_at(step), transformer, optimizer,
                                            scheduler, cfg, cfg.keep_last, extra=training_state())
        ctx.emit("checkpoint", step=step, path=str(path), reason=reason, written=written,
                 **({} if written else {"note": f"{path.name} was already saved at this step"}))

    def training_state() -> dict:
        return {"precision": precision.state_dict(), "validation": validator.state_dict(),
                "ema": ema.state_dict() if ema is not None else None}

    def validate() -> None:
        if not ranks.main:
            return
        ctx.phase("validate", 0, 1, step=step)
        fields = validator.record(step, validator.evaluate(transformer))
        ctx.emit("validation", **fields)
        if fields["best"] and step > 0:  # step 0 is the base model: nothing to keep
            save("best")
            mark_best(ctx.job_dir, step, fields["loss"])

    def export(**extra) -> None:
        if not ranks.main:
            return
        ctx.phase("save", 0, 1)
        with ctx.critical("exporting final/"):
            final = export_final(ctx.job_dir, transformer, cfg, steps=step, dataset_size=plan.dataset_size,
                                 model_dir=resolve_model_dir(cfg.model_id), ema_tensors=ema_tensors(ema, params, transformer),
                                 extra_meta={"exported_at_step": step, "total_steps": plan.total_steps,
                                             "best_step": validator.best_step, **extra})
        ctx.phase("save", 1, 1, final_dir=str(final))
        if cfg.merged_scale:
            merge(final)

    def merge(final: Path) -> None:  # optional, and slow on a big model: a failure here leaves final/ intact
        ctx.phase("save", 0, 1, what="merged")
        try:
            merged = export_merged(ctx.job_dir, resolve_model_dir(cfg.model_id), cfg.merged_scale)
        except Exception as exc:  # noqa: BLE001 - reported, and the adapter in final/ is what the run owes
            ctx.emit("warning", message=f"The merged model could not be saved ({type(exc).__name__}: {exc}); "
                                        f"the adapter in {final} is complete.", hint="Free disk space or memory, then run "
                                        "`trainer/run.py merge` with params.json {\"run\": ..., \"scale\": ...}.")
            return
        ctx.phase("save", 1, 1, what="merged", merged_dir=str(merged))

    def emit_step() -> None:  # loss = mean of the steps since the previous step event
        ctx.emit("step", **meter.report(step, order.epoch_at(step), scheduler.get_last_lr()[0], grad_norm),
                 skipped_steps=precision.skipped_steps, global_batch=plan.samples_per_step, gpus=ranks.world)

    # -- the loop -------------------------------------------------------------------------------
    meter = StepMeter(plan.total_steps, step, device)
    skipped_in_a_row, grad_norm = 0, None
    try:
        if step == 0 and ranks.main:
            previews.maybe(step, transformer)  # the baseline: LoRA B starts at zero, so this is the base model
            if validator.due(step):
                validate()
        ctx.phase("train", step, plan.total_steps)
        while step < plan.total_steps:
            loss_sum = torch.zeros((), device=device)
            for micro in ranks.my_micro_batches(cfg.grad_accum):
                torch.manual_seed(micro_seed(cfg.seed, step, micro))
                batch = make_batch([tracks[i] for i in order.indices(step, micro)], clip_frames, device)
                with precision.autocast():
                    loss = compute_loss(transformer, batch, null_emb, obj, precision.base)
                precision.backward(loss / cfg.grad_accum)
                loss_sum += loss.detach()
            loss_sum = ranks.sum_grads(params, loss_sum)  # every rank now holds the whole global batch's
            loss_val, grad_norm, applied = precision.step(optimizer, params, cfg.max_grad_norm, loss_sum / cfg.grad_accum)
            if not applied and precision.scaler is None:
                raise NonFiniteLoss(nan_message(ctx.job_dir, step + 1, loss_val, grad_norm))
            skipped_in_a_row = 0 if applied else skipped_in_a_row + 1
            if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                raise NonFiniteLoss(nan_message(ctx.job_dir, step + 1, loss_val, grad_norm, skipped_in_a_row))
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None and applied:
                ema.step(params)
            step += 1

            meter.add(loss_val if math.isfinite(loss_val) else None, plan.samples_per_step)
            if meter.due() or step == plan.total_steps:
                emit_step()
            if validator.due(step):
                validate()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save("periodic")
            save_now, stop, early_stop = ranks.agree(ranks.main and ctx.take_flag("save_now"),
                                                     ranks.main and ctx.stop_requested(), validator.patience_ran_out)
            if save_now:
                save("save_now")
            if ranks.main:
                previews.maybe(step, transformer, final=step == plan.total_steps)
            if early_stop:
                if ranks.main:
                    ctx.emit("warning", message=f"Early stop at step {step}: {cfg.early_stop_patience} validations "
                             f"without a new best (best {validator.best_loss:.5f} at step {validator.best_step}).")
                ctx.end_fields.update(early_stop=True)
                break
            if stop:
                if meter.n:
                    emit_step()
                save("stop")
                export(stopped=True)
                ctx.end_fields.update(saved_step=step)
                return "stopped"
    except StopNow:  # a second stop signal between saves: say exactly what was lost
        ckpts = list_checkpoints(ctx.job_dir)
        last = step_of(ckpts[-1]) if ckpts else None
        lost = step - (last or 0)
        ctx.emit("warning", message=f"Stopped at once at step {step} without saving: the last checkpoint is "
                 + (f"step {last}, so {lost} step(s) of training were lost." if last is not None else
                    f"none, so all {step} step(s) were lost."))
        ctx.end_fields.update(saved=False, saved_step=last, lost_steps=lost)
        raise
    except PeerLost:  # another rank died; rank 0's state is whole at `step`, so keep it
        save("a rank was lost")
        raise

    # -- the end: a last validation, and the export ---------------------------------------------
    if validator.due(step, final=True) and not (step % cfg.val_every == 0):
        validate()
    export()
    ctx.end_fields.update(saved_step=step)
    return "completed"


# ---- helpers beside the loop --------------------------------------------------------------------

def resolve_config(ctx, args) -> tuple[TrainConfig, Path | None]:
    """The config for this run, the checkpoint to resume from, both checked; writes config.json.

    On resume the fields that fix the adapter or its optimizer state (FIXED_AT_RESUME) must equal
    the checkpoint's, or the resume is refused naming the field; every other change applies, and a
    warning lists them. 'latest' skips damaged checkpoints and says which.
    """
    job_dir = Path(ctx.job_dir)
    cfg = TrainConfig.load(args.config or job_dir / "config.json")
    if args.manifest:
        cfg = cfg.replace(manifest=str(Path(args.manifest).expanduser().resolve()))
    if getattr(args, "set", None):
        try:  # checked like the file: an unknown field or a bad value is named
            cfg = cfg.replace(**parse_overrides(args.set))
        except ConfigError as exc:
            raise ConfigError(f"--set: {exc}") from None
    if getattr(args, "gpus", None):
        cfg = cfg.replace(gpus=args.gpus)
    ckpt = None
    if args.resume:
        ckpt, skipped = find_checkpoint(job_dir, args.resume)
        for s in skipped:
            ctx.emit("warning", message=f"Skipped a damaged checkpoint: {s}")
        saved = read_meta(ckpt)["config"]
        for k in FIXED_AT_RESUME:
            if k in saved and saved[k] != getattr(cfg, k):
                fix = ("Resume with the same base model." if k == "model_id" else
                       "Resume with the run's own settings, or start a new run from them and change it there.")
                raise AdapterMismatch(f"{k}: checkpoint {ckpt.name} was trained with {saved[k]!r}; a resume "
                                      f"cannot change it to {getattr(cfg, k)!r}. {fix}")
        changed = sorted(k for k, v in cfg.to_dict().items() if k in saved and saved[k] != v and k != "manifest")
        if changed:  # nanoGPT: only what defines the adapter is fixed; the rest applies, said out loud
            ctx.emit("warning", message=f"Resuming with settings changed since {ckpt.name}, applied from "
                     f"step {read_meta(ckpt)['step']}: " + ", ".join(f"{k} {saved[k]!r} → {getattr(cfg, k)!r}"
                                                                      for k in changed) + ".")
    has_snapshot = (job_dir / "dataset.jsonl").is_file()
    if not (ckpt is not None and has_snapshot) and not Path(cfg.manifest or "").is_file():
        raise ConfigError(f"manifest: no dataset manifest at {cfg.manifest!r}. Pass --manifest PATH "
                          "(a datasets/<name>/manifest.jsonl) or set `manifest` in the config.")
    write_json(job_dir / "config.json", cfg.to_dict())
    return cfg, ckpt


def resume(ctx, cfg, ckpt: Path, transformer, optimizer, scheduler, precision, validator, ema,
           main: bool = True) -> int:
    """Load `ckpt` into everything that trains; fork if it is not this run's newest checkpoint
    (rank 0 forks; every rank loads the same checkpoint, whatever rank count wrote it)."""
    ours = Path(ckpt).resolve().parent == (Path(ctx.job_dir) / "checkpoints").resolve()
    aside = fork_at(ctx.job_dir, step_of(ckpt)) if ours and main else None
    restored = load_checkpoint(ckpt, transformer, optimizer, scheduler, cfg.model_id)
    state = restored["state"]
    precision.load_state_dict(state.get("precision"))
    validator.load_state_dict(state.get("validation"))
    if ema is not None and state.get("ema"):
        ema.load_state_dict(state["ema"])
    apply_hyperparameters(optimizer, scheduler, cfg)
    if aside is not None:
        ctx.emit("warning", message=f"Resumed from {Path(ckpt).name}, which is not the newest checkpoint: this "
                 f"run now forks there; the later checkpoints moved to checkpoints/{aside.name}/.")
    ctx.emit("resumed", step=restored["step"], epoch=restored["epoch"], checkpoint=str(ckpt),
             adapter_tensors=restored["adapter_tensors_loaded"], forked=aside is not None,
             abandoned=str(aside) if aside else None)
    return restored["step"]


def apply_hyperparameters(optimizer, scheduler, cfg: TrainConfig) -> None:
    """A restored optimizer and schedule carry the old learning rate and weight decay: set the config's.

    transformers' schedules are LambdaLR: lr = base_lr * lambda(step), so the base values change and the
    current lr is recomputed from the restored step.
    """
    scheduler.base_lrs = [cfg.learning_rate for _ in optimizer.param_groups]
    lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(optimizer.param_groups, lrs):
        group.update(lr=lr, initial_lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler._last_lr = lrs  # what get_last_lr() reports until the next step


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


def make_optimizer(ctx, params: list, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """8-bit AdamW (bitsandbytes, ~4x less optimizer memory) where bitsandbytes runs: CUDA and CPU.
    Elsewhere (MPS) torch's AdamW, said in a warning. torch's AdamW is fused on CUDA."""
    if cfg.optimizer == "adamw_8bit" and device.type in ("cuda", "cpu"):
        import bitsandbytes as bnb
        return bnb.optim.AdamW8bit(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw_8bit":
        ctx.emit("warning", message=f"bitsandbytes has no 8-bit optimizer for {device.type}; using torch's AdamW.")
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                             fused=device.type == "cuda")


def make_ema(params: list, cfg: TrainConfig):
    if not cfg.ema_decay:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel(params, decay=cfg.ema_decay)


def ema_tensors(ema, params: list, transformer) -> dict | None:
    """The adapter as the EMA holds it (the live weights are put back afterwards)."""
    if ema is None:
        return None
    ema.store(params)
    ema.copy_to(params)
    try:
        return adapter_state(transformer)
    finally:
        ema.restore(params)


def speed_setup(ctx, transformer, cfg: TrainConfig, device: torch.device) -> None:
    """Gradient checkpointing, the attention backend and regional compilation, each as configured."""
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if cfg.attention_backend != "native":
        try:
            transformer.set_attention_backend(cfg.attention_backend)
        except (ImportError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"attention_backend {cfg.attention_backend!r} is not usable here ({exc}). Use "
                              "'native' (PyTorch SDPA), or install the kernels it needs.") from None
    if cfg.compile:
        # diffusers' regional compilation compiles each block class named in `_repeated_blocks`;
        # ACE-Step's transformer does not name its own, so name it here
        transformer._repeated_blocks = ("AceStepTransformerBlock",)
        transformer.compile_repeated_blocks()
        ctx.emit("warning", message="torch.compile is on: the first steps (and each new clip length) compile, "
                 "so they are slow; steady-state steps are faster.")


def pinned(tracks: list[dict], device: torch.device) -> list[dict]:
    """Cached tensors in page-locked host memory, so each step's copy to the GPU can overlap compute."""
    if device.type != "cuda":
        return tracks
    return [{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in tracks]


def micro_seed(seed: int, step: int, micro: int) -> int:
    """The seed of one micro-batch's crops, noise, timesteps and dropout: a function of where it sits in
    the run, not of what ran before it, so any rank can draw it and a resume on any rank count replays it."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{step}:{micro}".encode()).digest()[:8], "big") >> 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def nan_message(job_dir: Path, step: int, loss: float, grad_norm: float, skipped: int = 0) -> str:
    ckpts = list_checkpoints(job_dir)
    good = f"the last good checkpoint is {ckpts[-1].name}" if ckpts else "no checkpoint was saved yet"
    if skipped:
        return (f"fp16 loss scaling skipped {skipped} steps in a row up to step {step} (loss={loss}, "
                f"grad_norm={grad_norm}): the model overflows fp16; {good}. Use device 'cuda:fp32'.")
    return (f"The loss became NaN/Inf at step {step} (loss={loss}, grad_norm={grad_norm}); the step was not "
            f"applied and {good}.")


def predicted_peak(cfg: TrainConfig, device: torch.device, precision: Precision, tracks: list[dict],
                   clip_frames: int) -> float | None:
    """The preflight's measured allocator peak for this run (MB), beside which the step events'
    gpu_mem_peak_mb lands on the memory chart; None off CUDA or when it was never measured."""
    if device.type != "cuda":
        return None
    frames = clip_frames or max((int(t["frames"]) for t in tracks), default=0)
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(precision.base, "fp32")
    return predicted_peak_mb(cfg.model_id, cfg.to_dict(), dtype=dtype, seconds=frames / shapes.LATENTS_PER_SECOND)
