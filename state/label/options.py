"""Auto-label: the job's options and where its models are.

Stdlib only: the Dataset page reads availability and writes params from here, the label job
(trainer/label/autolabel.py) reads the same params; which fields it may write is state/label/policy.py.
"""
from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from state import paths
from state.model.catalog import local_dir_name

MODES = ("signal", "lm", "both")
LM_SIZES = ("0.6B", "1.7B", "4B")
LM_CONTEXT = 4096  # tokens the 5 Hz LM was trained with (ACESTEP.md §5); longer tracks are cut
CODES_PER_SECOND = 5


def lm_repo_id(size: str) -> str:
    return f"ACE-Step/acestep-5Hz-lm-{size}"


@dataclass
class LabelParams:
    """params.json of a label job. Every field has a default, so `{"dataset": "x"}` is a valid job."""

    dataset: str = ""               # dataset name under datasets/
    mode: str = "both"              # signal (librosa, CPU) | lm (ACE-Step 5 Hz LM) | both
    only_unlabelled: bool = False   # skip tracks whose sidecar already holds any label
    protect_user: bool = True       # keep every user value; fill only empty fields (module docstring)
    lyrics: bool = True             # also write the LM's lyrics (off: labels only, and generation stops at </think>)
    lm_size: str = "0.6B"           # 0.6B | 1.7B | 4B
    lm_path: str | None = None      # a local LM folder instead of models/ACE-Step--acestep-5Hz-lm-<size>
    model: str | None = None        # diffusers model (VAE + audio tokenizer); default: the workspace model
    max_new_tokens: int = 1024      # LM answer budget; the audio codes get the rest of the context
    temperature: float = 0.85       # LM sampling (0 = greedy)
    top_p: float = 0.9
    seed: int = 0                   # sampling seed, per track offset by its index: reruns repeat

    @classmethod
    def from_dict(cls, raw: dict) -> "LabelParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"Unknown label option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        p = cls(**raw)
        if not p.dataset:
            raise ValueError("No dataset given: params.json needs \"dataset\" (a name under datasets/).")
        if p.mode not in MODES:
            raise ValueError(f"mode {p.mode!r} is not one of {', '.join(MODES)}.")
        if p.lm_size not in LM_SIZES and not p.lm_path:
            raise ValueError(f"lm_size {p.lm_size!r} is not one of {', '.join(LM_SIZES)}; or give lm_path.")
        if not 16 <= int(p.max_new_tokens) < LM_CONTEXT // 2:
            raise ValueError(f"max_new_tokens must be between 16 and {LM_CONTEXT // 2 - 1}.")
        return p

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def uses_lm(self) -> bool:
        return self.mode in ("lm", "both")

    @property
    def uses_signal(self) -> bool:
        return self.mode in ("signal", "both")


# ---- where the models are ----------------------------------------------------------------------

def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file()


def lm_dir(size: str, explicit: str | None = None) -> Path | None:
    """The 5 Hz LM folder: an explicit path, the fetch job's models/ACE-Step--acestep-5Hz-lm-<size>,
    or the LM inside a downloaded original release (models/*/checkpoints/acestep-5Hz-lm-<size>)."""
    name = f"acestep-5Hz-lm-{size}"
    cands = [Path(explicit).expanduser()] if explicit else []
    models = paths.models_dir()
    cands += [models / local_dir_name(lm_repo_id(size)), models / name]
    if models.is_dir():
        cands += sorted(models.glob(f"*/checkpoints/{name}"))
    for c in cands:
        if (c / "config.json").is_file() and _has_weights(c):
            return c
    return None


@dataclass
class CodecSource:
    """Where the VAE and the 5 Hz audio tokenizer for the LM path come from."""

    kind: str                 # diffusers | imported (convert.py kept it aside) | original (release layout)
    vae_dir: Path             # a diffusers AutoencoderOobleck folder
    tokenizer: Path           # diffusers: the audio_tokenizer/ folder; else a model.safetensors with tokenizer.* keys
    config: Path | None       # original/imported: the DiT config.json (pool window, FSQ levels, head_dim)
    silence: Path | None      # condition_encoder safetensors (diffusers/imported) or silence_latent.pt (original)


def safetensors_keys(path: Path) -> list[str]:
    """Tensor names from a safetensors header (8-byte length + JSON), without loading any tensor."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return []
    return [k for k in header if k != "__metadata__"]


def _has_tokenizer_keys(path: Path) -> bool:
    return any(k.startswith("tokenizer.") for k in safetensors_keys(path))


def codec_source(model_dir: Path | None) -> CodecSource | None:
    """The first of: <model>/audio_tokenizer/ (diffusers), <model>/audio_tokenizer_original/ (kept by
    the import), an original release under models/*/checkpoints/ whose DiT holds tokenizer.* keys."""
    if model_dir is not None:
        model_dir = Path(model_dir)
        silence = model_dir / "condition_encoder" / "diffusion_pytorch_model.safetensors"
        silence = silence if silence.is_file() else None
        tok = model_dir / "audio_tokenizer"
        if (tok / "config.json").is_file() and _has_weights(tok):
            return CodecSource("diffusers", model_dir / "vae", tok, None, silence)
        kept = model_dir / "audio_tokenizer_original" / "model.safetensors"
        if kept.is_file() and _has_tokenizer_keys(kept):
            return CodecSource("imported", model_dir / "vae", kept, kept.parent / "config.json", silence)
    models = paths.models_dir()
    for ckpt in sorted(models.glob("*/checkpoints")) if models.is_dir() else []:
        if not (ckpt / "vae" / "config.json").is_file():
            continue
        for dit in sorted(ckpt.glob("acestep-v15-*")):
            weights = dit / "model.safetensors"
            if weights.is_file() and _has_tokenizer_keys(weights):
                sl = dit / "silence_latent.pt"
                return CodecSource("original", ckpt / "vae", weights, dit / "config.json", sl if sl.is_file() else None)
    return None


@dataclass
class Availability:
    lm: Path | None
    codec: CodecSource | None
    reasons: list[str] = field(default_factory=list)  # why the LM path cannot run, in words

    @property
    def ok(self) -> bool:
        return self.lm is not None and self.codec is not None


def availability(model_dir: Path | None, size: str, lm_path: str | None = None, model_name: str = "") -> Availability:
    """Can the LM path run? If not, `reasons` says what is missing and how to get it."""
    lm = lm_dir(size, lm_path)
    codec = codec_source(model_dir)
    reasons = []
    if lm is None:
        where = lm_path or f"models/{local_dir_name(lm_repo_id(size))}"
        reasons.append(f"The ACE-Step 5 Hz LM ({lm_repo_id(size)}) is not on this machine (looked in {where}). "
                       "Download it, or point lm_path at a local copy.")
    if codec is None:
        reasons.append(f"The model {model_name or model_dir or '(none)'} has no 5 Hz audio tokenizer (no "
                       "audio_tokenizer/ folder, no tokenizer weights kept by the import, and no original "
                       "ACE-Step 1.5 release under models/). Import the original release (checkpoints/), "
                       "which carries it, or use a diffusers model that includes audio_tokenizer/.")
    return Availability(lm, codec, reasons)
