"""The `publish` job: put a finished run's adapter on the Hugging Face Hub as a model repository.

params.json: `run_id`, `repo` ("name" for the token's own account, or "owner/name"), `private`
(default True). The token comes only from HF_TOKEN (the dashboard hands a pasted token to this
process through its environment); it is never written anywhere.

One commit uploads, at the repository root so `pipe.load_lora_weights("owner/name")` finds it:
    pytorch_lora_weights.safetensors              diffusers format
    adapter_config.json, adapter_model.safetensors original ACE-Step PEFT format (official UI, ComfyUI)
    training_meta.json                            base model, variant, shift, settings
    loss_curve.png                                the run's loss (matplotlib, headless)
    samples/*                                     A/B audio from the run's samples/ folder, if any
    README.md                                     the model card, samples embedded
Torch-free: nothing here loads a model.
"""
from __future__ import annotations

from pathlib import Path

from state import paths
from state.cloud.hub import HubError, explain, hf_token, missing_token
from state.fsutil import atomic_write_text, read_json, read_json_object
from state.train import runs
from trainer.train.card import model_card

AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"}
MAX_SAMPLES = 16                 # a model card with more players than this is unreadable
MAX_SAMPLE_BYTES = 50 * 2**20    # skip huge renders; the Hub stores them but the card would crawl
ADAPTER_FILES = ("pytorch_lora_weights.safetensors", "adapter_config.json", "adapter_model.safetensors",
                 "training_meta.json")


def job_publish(ctx, args) -> str:
    run_id = paths.check_name(str(ctx.params.get("run_id") or ""), "run id")
    repo = str(ctx.params.get("repo") or "").strip()
    if not repo:
        raise ValueError("No repository name given: type one on the Publish page.")
    private = bool(ctx.params.get("private", True))
    try:
        url = publish(run_id, repo, private, ctx=ctx)
    except HubError as exc:
        ctx.emit("error", message=str(exc), hint=exc.hint)
        return "failed"
    ctx.emit("published", repo_id=url["repo_id"], url=url["url"], private=private, files=url["files"])
    return "completed"


def publish(run_id: str, repo: str, private: bool = True, ctx=None) -> dict:
    from huggingface_hub import CommitOperationAdd, HfApi

    run_dir = paths.run_dir(run_id)
    final = run_dir / "final"
    if not (final / ADAPTER_FILES[0]).is_file():
        raise HubError(f"Run {run_id} has no finished adapter (final/{ADAPTER_FILES[0]} is missing).",
                       "Let the run complete (or stop it: a stopped run exports final/), then publish again.")
    token = hf_token()
    if not token:
        raise missing_token("upload")
    api = HfApi()
    _phase(ctx, 0, "create repository")
    try:
        repo_id = api.create_repo(repo, private=private, exist_ok=True, token=token).repo_id
    except Exception as exc:  # noqa: BLE001 - every Hub failure becomes a sentence
        raise explain(exc, repo, True, "upload") from exc

    _phase(ctx, 1, "prepare files")
    files = {name: final / name for name in ADAPTER_FILES if (final / name).is_file()}
    out = Path(ctx.job_dir) if ctx is not None else run_dir
    if loss_curve_png(run_dir, out / "loss_curve.png"):
        files["loss_curve.png"] = out / "loss_curve.png"
    samples = sample_files(run_dir)
    files.update({f"samples/{p.name}": p for p in samples})
    meta = read_json(final / "training_meta.json", default={}) or {}
    config = read_json(run_dir / runs.CONFIG, default={}) or {}
    card = model_card(meta, config, repo_id=repo_id, run_id=run_id, samples=[p.name for p in samples],
                      sample_url=f"{api.endpoint}/{repo_id}/resolve/main/samples", prompt=_caption(samples),
                      has_curve="loss_curve.png" in files, endpoint=api.endpoint)
    atomic_write_text(out / "README.md", str(card))
    files["README.md"] = out / "README.md"

    _phase(ctx, 2, "upload")
    ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
    try:
        api.create_commit(repo_id, operations=ops, commit_message=f"AceLoRA: publish run {run_id}", token=token)
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, repo_id, True, "upload") from exc
    _phase(ctx, 3, "done")
    return {"repo_id": repo_id, "url": f"{api.endpoint}/{repo_id}", "files": sorted(files)}


def _phase(ctx, done: int, what: str) -> None:
    if ctx is not None:
        ctx.phase("upload", done, 3, None, step=what)


def _caption(samples: list[Path]) -> str | None:
    """The newest sample's prompt (its .json beside it: previews and A/B renders both write one)."""
    for p in reversed(samples):
        prompt = read_json_object(p.with_suffix(".json"))[0].get("prompt")
        if isinstance(prompt, dict) and prompt.get("caption"):
            return str(prompt["caption"])
    return None


def sample_files(run_dir: Path) -> list[Path]:
    """Audio under the run's samples/ (A/B renders and previews), newest last, bounded in count and size."""
    d = Path(run_dir) / "samples"
    if not d.is_dir():
        return []
    found = sorted((p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXT
                    and p.stat().st_size <= MAX_SAMPLE_BYTES), key=lambda p: p.stat().st_mtime)
    seen, out = set(), []
    for p in found[-MAX_SAMPLES:]:
        if p.name not in seen:  # the repo flattens samples/ into one folder
            seen.add(p.name)
            out.append(p)
    return out


def loss_curve_png(run_dir: Path, dest: Path) -> bool:
    """Draw the loss from events.jsonl to a PNG with matplotlib's headless Agg backend; False if no steps.

    matplotlib rather than plotly + kaleido: kaleido 1.x renders through a Chrome it downloads at run
    time, which a Space (or an offline machine) may not allow.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s = runs.load_series(run_dir)
    steps, loss = s.array("loss")  # finite values only
    if not loss.size:
        return False
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    ax.plot(steps, loss, lw=0.8, alpha=0.45, label="loss")
    if len(loss) >= 10:  # a moving average shows the trend under the noise of single steps
        k = max(5, len(loss) // 20)
        ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.8, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, format="png")
    plt.close(fig)
    return True
