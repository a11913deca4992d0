"""Data-parallel training over the GPUs of one machine: torchrun ranks, and the launcher that watches them.

    trainer/run.py train --gpus N      the launcher (this job's process): resolves the config and the
                                       checkpoint, snapshots the dataset, takes one GPU lease per GPU,
                                       then runs `python -m torch.distributed.run --nproc_per_node N
                                       trainer/run.py train --ddp-worker` and writes the run's `end`
    each rank                          the ordinary training loop, told by `Ranks` what is its share

Why torchrun and a plain all-reduce (not `accelerate launch`, not DistributedDataParallel): torchrun ships
with torch, keeps no launcher config on disk, and already does the part that needs an engine (start N
processes, tear them all down when one dies). The trainer already owns what `Accelerator` would wrap
(precision and the fp16 scaler, device placement, checkpoints). DDP's gain, overlapping the gradient
exchange with the backward pass, is small here: the LoRA gradients are a few MB to a few hundred MB
against steps of seconds, and DDP syncs only on the last micro-batch of an accumulated step anyway. One
all-reduce after the accumulation keeps the model a plain module (checkpoints, export, validation and
previews unchanged) and works with the grouped unpadded forwards, gradient checkpointing and compile.

The config's batch is the global batch: every optimizer step's `grad_accum` micro-batches are dealt out,
`grad_accum / N` to each rank; each micro-batch draws its noise from a seed of (seed, step, micro-batch),
so N ranks train exactly the adapter one process trains, and a checkpoint resumes on any rank count.
Rank 0 alone reads control/ and writes events, validation, checkpoints and final/; the others follow its
word at every step end, so all ranks stop at the same step.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from state import jobs
from state.fsutil import read_json, write_json
from state.train.config import ConfigError

RANKS_DIR = ".ranks"  # <run>/.ranks/rank-R.json: each rank's pid at start, then its outcome
# Ranks wait at the next collective while rank 0 alone validates, saves or renders a preview, and at
# the preprocessing barrier for the slowest share: the timeout must outlast those, not a step. A rank
# that dies is caught by torchrun, not by this timeout.
COLLECTIVE_TIMEOUT = timedelta(hours=3)


class PeerLost(RuntimeError):
    """A collective failed: another rank is gone. Its own outcome file says why, not this one."""


class Ranks:
    """This process's place in the run: rank, world size, and the few collectives the loop needs.
    With one process (no torchrun) every method is the single-GPU behaviour."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.main = rank == 0
        self.device: torch.device | None = None

    @classmethod
    def from_env(cls, worker: bool) -> "Ranks":
        if not worker:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))

    def place(self, device: torch.device) -> torch.device:
        """The configured device shifted to this rank's GPU (cuda:K -> cuda:K+local_rank)."""
        if self.world > 1 and device.type == "cuda":
            device = torch.device("cuda", (device.index or 0) + self.local_rank)
            torch.cuda.set_device(device)
        return device

    @contextlib.contextmanager
    def group(self, device: torch.device):
        """The process group for the block: NCCL between GPUs, gloo on CPU (how the tests run)."""
        if self.world == 1:
            yield self
            return
        self.device = device
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT,
                                **({"device_id": device} if device.type == "cuda" else {}))
        try:
            yield self
        finally:
            with contextlib.suppress(Exception):  # after a lost peer the group may not close cleanly
                dist.destroy_process_group()

    def lease(self, ctx, device):
        """One GPU: this job takes the lease. Under torchrun the launcher holds one lease per GPU."""
        return ctx.gpu_lease(device) if self.world == 1 else contextlib.nullcontext()

    # ---- the loop's collectives ----------------------------------------------------------------

    def my_micro_batches(self, grad_accum: int) -> range:
        """This rank's share of a step's micro-batches (contiguous; TrainConfig checks the division)."""
        per = grad_accum // self.world
        return range(self.rank * per, (self.rank + 1) * per)

    def preprocess(self, run, rows: list[dict], ctx) -> list[dict]:
        """Each rank encodes its share of the tracks into the one cache; then all read every track back
        (cache hits). `run(rows, ctx)` is preprocess_rows; only rank 0's ctx writes events."""
        if self.world == 1:
            return run(rows, ctx)
        run(rows[self.rank::self.world], ctx)
        self._collective(dist.barrier)
        return run(rows, None)

    def same_start(self, params: list) -> None:
        """Every rank starts from rank 0's LoRA weights (they are seeded alike; this makes it certain)."""
        for p in params if self.world > 1 else ():
            self._collective(dist.broadcast, p.data, 0)

    def sum_grads(self, params: list, loss_sum: torch.Tensor) -> torch.Tensor:
        """Sum the LoRA gradients and the loss over the ranks, in one all-reduce: afterwards every rank
        holds the gradient of the whole global batch, exactly what one process accumulating it holds."""
        if self.world == 1:
            return loss_sum
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss_sum.reshape(1).to(grads[0].dtype)])
        self._collective(dist.all_reduce, flat)
        at = 0
        for p, g in zip(params, grads):
            p.grad = g.copy_(flat[at:at + g.numel()].view_as(g))
            at += g.numel()
        return flat[-1].to(loss_sum.dtype)

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Rank 0's answers (save now, stop, early stop) on every rank, so all act on the same step."""
        if self.world == 1:
            return tuple(flags)
        t = torch.tensor([bool(f) for f in flags], dtype=torch.int32, device=self.device)
        self._collective(dist.broadcast, t, 0)
        return tuple(bool(x) for x in t.tolist())

    def _collective(self, fn, *args) -> None:
        try:
            fn(*args)
        except (RuntimeError, dist.DistBackendError) as exc:
            raise PeerLost(f"rank {self.rank} lost contact with the other ranks during {fn.__name__} ({exc})") from exc


# ---- a rank's frame (what run.py's main is for a single-process job) ----------------------------

class RankLog:
    """Events of ranks other than 0: warnings and errors go to log.txt, progress is rank 0's to report."""

    def __init__(self, rank: int):
        self.rank = rank

    def emit(self, event_type: str, **fields) -> dict:
        if event_type in ("warning", "error"):
            print(f"[rank {self.rank}] {event_type}: {fields.get('message')}", file=sys.stderr, flush=True)
        return {"type": event_type, **fields}

    def close(self) -> None:
        pass


def rank_file(job_dir: Path, rank: int) -> Path:
    return Path(job_dir) / RANKS_DIR / f"rank-{rank}.json"


def run_rank(args) -> int:
    """One torchrun rank: the training loop, its outcome written to .ranks/rank-R.json for the launcher
    (which alone writes `error` and `end`, because only it sees every rank)."""
    from state.events import EventWriter
    from trainer.hints import hint_for
    from trainer.job import JobContext, StopNow, load_params
    from trainer.train.loop import job_train

    rank, job_dir = int(os.environ["RANK"]), args.job_dir.resolve()
    write_json(rank_file(job_dir, rank), {"rank": rank, "pid": os.getpid(), "started": time.time()})
    events = EventWriter(job_dir) if rank == 0 else RankLog(rank)  # the launcher holds the disk-full reserve
    ctx = JobContext(job_dir, events, load_params(job_dir))
    ctx.install_signal_handlers()
    out: dict = {"rank": rank, "pid": os.getpid()}
    try:
        out["status"] = job_train(ctx, args) or "completed"
    except StopNow:
        out["status"] = "stopped"
    except BaseException as exc:  # noqa: BLE001 - the launcher must learn why every rank ended
        traceback.print_exc()
        out.update(status="failed", message=f"{type(exc).__name__}: {exc}", hint=hint_for(exc),
                   traceback=traceback.format_exc(limit=20), peer_lost=isinstance(exc, PeerLost))
    write_json(rank_file(job_dir, rank), {**out, "t": time.time(), "end_fields": ctx.end_fields})
    events.close()
    return 0 if out["status"] != "failed" else 1


# ---- the launcher -------------------------------------------------------------------------------

def rank_devices(device: str, n: int) -> list[torch.device]:
    """The GPUs an n-rank run takes (cuda:K .. cuda:K+n-1), or n CPU processes; refuses what is not there."""
    from trainer.model.load import pick_device_dtype

    first, _ = pick_device_dtype(None if device == "auto" else device)
    if first.type == "cpu":
        return [first] * n
    if first.type != "cuda":
        raise ConfigError(f"gpus {n}: data-parallel training needs CUDA GPUs (or the CPU), not {first.type}. "
                          "Set gpus to 1.")
    base, have = first.index or 0, torch.cuda.device_count()
    if base + n > have:
        raise ConfigError(f"gpus {n}: this machine has {have} GPU(s) visible" +
                          (f" from cuda:{base}" if base else "") + f". Set gpus to at most {have - base}.")
    return [torch.device("cuda", base + i) for i in range(n)]


def launch(ctx, cfg, ckpt: Path | None) -> str:
    """Run the training under torchrun with cfg.gpus ranks; returns the run's end status."""
    job_dir, n = Path(ctx.job_dir), cfg.gpus
    devices = rank_devices(cfg.device, n)
    (job_dir / RANKS_DIR).mkdir(exist_ok=True)
    for old in (job_dir / RANKS_DIR).glob("rank-*.json"):
        old.unlink()  # a previous launch's outcomes must not speak for this one
    cmd = [sys.executable, "-u", "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           str(jobs.RUN_PY), "train", "--job-dir", str(job_dir), "--ddp-worker"]
    if ckpt is not None:
        cmd += ["--resume", str(Path(ckpt).resolve())]  # resolved once, so every rank loads the same one
    with contextlib.ExitStack() as leases:
        for d in devices if devices[0].type == "cuda" else ():
            leases.enter_context(ctx.gpu_lease(d))  # in index order, so two multi-GPU runs never deadlock
        # its own session: a Ctrl-C in the terminal reaches the launcher (which asks for a clean stop),
        # not torchrun; the parent-death signal takes the ranks down if the launcher is killed
        proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent)
        rc = _wait(ctx, proc)
    return _outcome(ctx, n, rc)


def _wait(ctx, proc: subprocess.Popen) -> int:
    """torchrun's exit code. A first stop signal only wrote control/stop (rank 0 saves and all stop at
    the step end); a second stops at once: SIGTERM to torchrun, which passes it on to every rank."""
    from trainer.job import StopNow

    while True:
        try:
            return proc.wait()
        except StopNow:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _outcome(ctx, n: int, rc: int) -> str:
    """The run's status from the ranks' outcome files; a failure names the rank that caused it."""
    from trainer.train.checkpoint import list_checkpoints

    ranks = [read_json(rank_file(ctx.job_dir, r), default=None) or {} for r in range(n)]
    main = ranks[0]
    ctx.end_fields.update(main.get("end_fields") or {}, gpus=n)
    if rc == 0 and main.get("status") in ("completed", "stopped"):
        return main["status"]
    cause = _cause(ranks, n, rc)
    if cause is None:  # every rank ended after a stop request, none by its own fault
        return "stopped" if ctx.stop_requested() or main.get("status") == "stopped" else "failed"
    ckpts = list_checkpoints(ctx.job_dir)
    keep = (f" The last checkpoint, {ckpts[-1].name}, is resumable (Resume, or --resume latest; on any number "
            "of GPUs)." if ckpts else " No checkpoint was saved yet.")
    ctx.emit("error", message=cause["message"] + keep, hint=cause.get("hint"), traceback=cause.get("traceback"),
             rank=cause["rank"])
    return "failed"


def _cause(ranks: list[dict], n: int, rc: int) -> dict | None:
    """The first rank that failed on its own (an error, or killed from outside), or None."""
    errors = sorted((r for r in ranks if r.get("status") == "failed" and not r.get("peer_lost")),
                    key=lambda r: r.get("t", 0))
    if errors:
        r = errors[0]
        return {**r, "message": f"Rank {r['rank']} of {n} failed: {r['message']}"}
    if not any(ranks):
        return {"rank": 0, "message": f"torchrun exited with code {rc} before any rank started; see log.txt."}
    for i, r in enumerate(ranks):
        if "status" not in r:
            how = (f"(pid {r['pid']}) ended without an error of its own: it was killed from outside (kill -9, or "
                   "the kernel's out-of-memory killer: see `dmesg`)" if r.get("pid") else "never started")
            return {"rank": i, "message": f"Rank {i} of {n} {how}, so torchrun ended the other ranks."}
    if all(r.get("status") in ("completed", "stopped") for r in ranks):
        return None
    if any(r.get("peer_lost") for r in ranks) and any(r.get("status") == "stopped" for r in ranks):
        return None  # a rank stopped (during preprocessing) and the others lost it: a stop, not a fault
    return {"rank": 0, "message": f"torchrun exited with code {rc}; see log.txt for each rank's output."}
