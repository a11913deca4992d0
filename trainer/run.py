"""Job entry point: `python trainer/run.py KIND --job-dir DIR [options]`.

Each kind maps to one function `fn(ctx: JobContext, args) -> status`, imported lazily so a
fetch job never pays for importing the training stack. run.py owns the frame every job shares:
the events file, signal handling, the `error` event with a hint, and the closing `end` event.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from state import jobs  # noqa: E402
from state.events import EventWriter  # noqa: E402
from trainer.job import JobContext, StopNow, load_params  # noqa: E402

# kind -> "module:function"; a function returns the end status (completed | stopped | failed)
KINDS = {
    "demo-model": "trainer.model.tiny:job_build_demo",
    "fetch": "trainer.model.fetch:job_fetch",
    "import-original": "trainer.model.convert:job_import",
    "label": "trainer.label.autolabel:job_label",
    "preprocess": "trainer.dataset.preprocess:job_preprocess",
    "train": "trainer.train.loop:job_train",
    "merge": "trainer.train.export:job_merge",
    "selftest": "trainer.selftest:job_selftest",
    "publish": "trainer.cloud.publish:job_publish",
    "hub-sync": "trainer.cloud.sync:job_hub_sync",
    "hub-restore": "trainer.cloud.sync:job_hub_restore",
    "space-watch": "trainer.cloud.space_watch:job_space_watch",
    "remote-train": "trainer.cloud.remote:job_remote_train",
    "remote-worker": "trainer.cloud.remote:job_remote_worker",
    "ab": "trainer.listen.generate:job_ab",
    "estimate": "trainer.train.estimate:job_estimate",
    "style-distance": "trainer.listen.style:job_style_distance",
}


def hint_for(exc: BaseException) -> str | None:
    from trainer.hints import hint_for as _hint  # noqa: PLC0415
    return _hint(exc)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="trainer/run.py", description=__doc__)
    ap.add_argument("kind", choices=sorted(KINDS))
    ap.add_argument("--job-dir", required=True, type=Path)
    ap.add_argument("--config", type=Path, help="train: a config JSON to use instead of <job-dir>/config.json")
    ap.add_argument("--manifest", type=Path, help="train: a dataset manifest (JSONL) to use")
    ap.add_argument("--resume", help="train: checkpoint folder (or 'latest') to resume from")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="train: change one config field, e.g. --set rank=32 --set device=cuda:1 (repeatable; "
                    "VALUE is read as JSON when it parses, else as a string)")
    ap.add_argument("--after", help="train: wait for this run id to end before starting; "
                    "sample: for this earlier preview job")
    ap.add_argument("--gpus", type=int, help="train: data-parallel over this many GPUs of this machine "
                    "(torchrun); default: the config's `gpus` (1)")
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)  # a torchrun rank (distributed.py)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.ddp_worker:  # one of torchrun's ranks: its launcher is this job's process and writes `end`
        from trainer.train.distributed import run_rank  # noqa: PLC0415
        return run_rank(args)
    job_dir = args.job_dir.resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    jobs.register_self(job_dir, args.kind, sys.argv)
    t0 = time.time()
    # reserve: a small ballast file the writer gives up on a full disk, so `error` and `end` still fit
    with EventWriter(job_dir, reserve=True) as events:
        ctx = JobContext(job_dir, events, load_params(job_dir))
        ctx.install_signal_handlers()
        module, fn = KINDS[args.kind].split(":")
        try:
            status = getattr(importlib.import_module(module), fn)(ctx, args) or "completed"
        except StopNow:
            status = "stopped"
        except BaseException as exc:  # noqa: BLE001 - every failure must end with an `error` event
            with contextlib.suppress(OSError):  # log.txt is on the same (maybe full) disk
                traceback.print_exc()
            _emit_last(events, "error", message=f"{type(exc).__name__}: {exc}", hint=hint_for(exc),
                       traceback=traceback.format_exc(limit=20))
            status = "failed"
        _emit_last(events, "end", status=status, elapsed_s=round(time.time() - t0, 3),
                   final_dir=str(job_dir / "final") if (job_dir / "final").is_dir() else None, **ctx.end_fields)
    return 0 if status in ("completed", "stopped") else 1


def _emit_last(events: EventWriter, event_type: str, **fields) -> None:
    # The closing events must not raise over the real error; if even they cannot be written (the
    # disk is full past the reserve), the dashboard derives `died` and says the disk is full.
    try:
        events.emit(event_type, **fields)
    except OSError as exc:
        with contextlib.suppress(OSError):
            print(f"could not record the {event_type} event: {exc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
