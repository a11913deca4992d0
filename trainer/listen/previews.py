"""Preview samples during training, rendered outside the training process (the `sample` job kind).

ACESTEP.md §4: loading an adapter for inference inside the training process gave garbled audio, so
the training loop never generates. When a preview is due (a step-0 baseline, every `sample_every`
steps, or `control/sample_now`), `Sampler.maybe` does only cheap work in the loop: it writes the
current LoRA tensors (a few MB, plus the run config they need) into
`samples/jobs/step-NNNNNN/` and launches a detached `sample` job there. That job loads the base
model in its own process, attaches the snapshot, renders the fixed prompt from the fixed seed,
loudness-normalises it (so previews across steps compare by content, not level), writes
`samples/step-NNNNNN.wav` + `.json`, and appends a `sample` event (step, path) to the run's events.

Sample jobs run one at a time: each waits (`--after`) for the previous one, so a slow render
never stacks up pipelines in memory. On a GPU a preview still needs room for a second copy of the
base model next to training; sampling is opt-in for that reason. Before the run writes its `end`
event the trainer waits for pending previews (or, when stopping, tells them to stop), so every
`sample` event lands before `end` and the run's status stays readable.
"""
from __future__ import annotations

import time
from pathlib import Path

from state import events as ev
from state import jobs
from state.fsutil import write_json
from state.listen import ab

JOBS = "jobs"
POLL_S = 0.2
STOP_WAIT_S = 30.0


class Sampler:
    """The training loop's side of previews: one-line calls `maybe(step)` and `finish(step)`."""

    def __init__(self, ctx, cfg, transformer):
        self.ctx, self.cfg, self.transformer = ctx, cfg, transformer
        self.run_dir = Path(ctx.job_dir)
        self.pending: list[Path] = []
        self.last_step: int | None = None

    def maybe(self, step: int) -> None:
        """Sample at step 0 (the baseline), every `sample_every` steps, and whenever sample_now is set."""
        due = self.cfg.sample_every > 0 and step % self.cfg.sample_every == 0
        if self.ctx.take_flag("sample_now") or due:
            self.launch(step)

    def launch(self, step: int) -> Path | None:
        wav = ab.samples_dir(self.run_dir) / f"step-{step:06d}.wav"
        if step == self.last_step or wav.is_file():
            return None  # already rendered (sample_now and a periodic sample coincided, or a resume)
        from safetensors.torch import save_file

        from trainer.train.adapter import adapter_state
        from trainer.train.checkpoint import ADAPTER_FILE

        job = ab.samples_dir(self.run_dir) / JOBS / f"step-{step:06d}"
        job.mkdir(parents=True, exist_ok=True)
        if step > 0:  # at step 0 LoRA B is zero: the adapter is the base, so the baseline renders without one
            save_file(adapter_state(self.transformer), str(job / ADAPTER_FILE), metadata={"format": "pt"})
            write_json(job / "meta.json", {"step": step, "config": self.cfg.to_dict()})
        write_json(job / "params.json", preview_params(self.run_dir, self.cfg, step))
        self.pending = [p for p in self.pending if jobs.status(p).active]
        after = ["--after", self.pending[-1].name] if self.pending else []
        jobs.launch(job, "sample", after)
        self.pending.append(job)
        self.last_step = step
        return job

    def finish(self, step: int, stopping: bool = False) -> None:
        """Before the run ends: render the last step if sampling is on, then wait for every pending preview.

        When stopping, pending previews are asked to stop instead (a stop should be quick); their
        audio is lost, the checkpoint is not.
        """
        if not stopping and self.cfg.sample_every > 0:
            self.launch(step)
        if stopping:
            for job in self.pending:
                jobs.request(job, "stop")
        total = len(self.pending)
        deadline = time.time() + STOP_WAIT_S
        while self.pending:
            self.pending = [p for p in self.pending if jobs.status(p).active]
            if not stopping:
                self.ctx.phase("sample", total - len(self.pending), total)
                if self.ctx.stop_requested():
                    return self.finish(step, stopping=True)
            elif time.time() > deadline:
                for job in self.pending:
                    jobs.kill(job)
                return
            time.sleep(POLL_S)


def preview_params(run_dir: Path, cfg, step: int) -> dict:
    """The fixed preview request: the config's prompt, else the first training track's labels."""
    tracks = ab.dataset_tracks(run_dir)
    prompt = dict(cfg.sample_prompt) or (ab.prompt_from_track(tracks[0]) if tracks else {})
    prompt["caption"] = prompt.get("caption") or "instrumental music"
    prompt["duration"] = float(cfg.sample_seconds)
    d = ab.default_settings(run_dir)
    return {"step": step, "prompt": prompt, "seed": cfg.sample_seed, "steps": cfg.sample_steps or d["steps"],
            "shift": cfg.shift, "guidance": d["guidance"], "device": cfg.device, "model_id": cfg.model_id}


def job_sample(ctx, args) -> str:
    """Render one training preview (params.json from Sampler.launch) and report it to the run."""
    from trainer.listen.generate import Progress, initial_noise, load_adapter, render, use_adapter, write_wav
    from trainer.listen.loudness import match
    from trainer.model.load import load_pipeline, pick_device_dtype
    from trainer.train.checkpoint import ADAPTER_FILE

    job = Path(ctx.job_dir)
    run_dir = job.parent.parent.parent  # <run>/samples/jobs/step-NNNNNN
    p = ctx.params
    if args.after and not ctx.wait_for(job.parent / args.after, POLL_S):
        return "stopped"
    device, dtype = pick_device_dtype(None if p["device"] == "auto" else p["device"])
    ctx.phase("load", 0, 1)
    pipe = load_pipeline(p["model_id"], device=device, dtype=dtype)
    if (job / ADAPTER_FILE).is_file():
        load_adapter(pipe, job, "preview")
        use_adapter(pipe, "preview", 1.0)
    ctx.phase("load", 1, 1)
    latents = initial_noise(pipe, p["seed"], p["prompt"]["duration"])
    audio = render(pipe, p["prompt"], latents, p["steps"], p["shift"], p["guidance"],
                   Progress(ctx, p["steps"], "sample").step)
    [audio], report = match([audio], pipe.sample_rate)
    wav = ab.samples_dir(run_dir) / f"step-{p['step']:06d}.wav"
    write_wav(wav, audio, pipe.sample_rate)
    write_json(wav.with_suffix(".json"), {**p, "file": wav.name, "loudness": report.to_dict(),
                                          "sample_rate": pipe.sample_rate, "created_at": time.time()})
    (job / ADAPTER_FILE).unlink(missing_ok=True)  # the snapshot existed only for this render
    if not run_ended(run_dir):  # after the run's `end`, an event would make the run look alive again
        ev.append_event(run_dir, "sample", step=p["step"], path=str(wav))
    return "completed"


def run_ended(run_dir: Path) -> bool:
    last = ev.last_event(Path(run_dir) / ev.EVENTS_FILE, types=("start", "end"), whole_file=True)
    return bool(last and last.get("type") == "end")
