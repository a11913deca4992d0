"""The adapter's model card, one function for both places it goes: `final/README.md` (export) and
the published repository's README.md (trainer/cloud/publish.py).

Built through huggingface_hub's ModelCard / ModelCardData, so the metadata is what the Hub reads:
`base_model` + `base_model_relation: adapter` (the model page lists the adapter under its base),
`library_name: diffusers`, `pipeline_tag: text-to-audio`, tags, and a `widget` whose output is an
audio sample (the Hub plays it on the model page). Torch-free: publishing imports it too.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

ADAPTER_NAMES = {"lora": "LoRA", "dora": "DoRA", "lokr": "LoKr"}
TAGS = ["ace-step", "ace-step-1.5", "lora", "text-to-audio", "music", "acelora"]
LIBRARY = "diffusers"
PIPELINE_TAG = "text-to-audio"


def hub_id(model_id: str) -> str | None:
    """The base model as a Hub id for the card's metadata, or None for local folders and the demo."""
    if not model_id or model_id.count("/") != 1 or model_id.startswith((".", "/", "~")) or Path(model_id).exists():
        return None
    return model_id


def model_card(meta: dict, config: dict | None = None, *, repo_id: str | None = None, run_id: str | None = None,
               samples: Sequence[str] = (), sample_url: str = "samples", prompt: str | None = None,
               has_curve: bool = False, endpoint: str | None = None):
    """The card for an adapter described by `meta` (training_meta.json) and `config` (config.json).

    `repo_id`: the Hub repository it is published to (None: a local final/ folder). `samples`: audio file
    names under `samples/` in the card's folder; players point at `{sample_url}/{name}` (a relative path
    locally, the repository's resolve URL on the Hub); the newest is the widget's output, with `prompt`.
    """
    from huggingface_hub import ModelCard, ModelCardData, constants

    config = config or {}
    endpoint = endpoint or constants.ENDPOINT
    base = meta.get("base_model_id") or config.get("model_id") or "unknown"
    base_hub = hub_id(base)
    data = ModelCardData(
        base_model=base_hub, library_name=LIBRARY, pipeline_tag=PIPELINE_TAG, tags=list(TAGS),
        **({"base_model_relation": "adapter"} if base_hub else {}),
        **({"widget": [{"text": prompt or "ACE-Step 1.5 LoRA preview",
                        "output": {"url": f"samples/{samples[-1]}"}}]} if samples else {}),
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n" + _body(meta, config, base, base_hub, repo_id, run_id,
                                                             samples, sample_url, has_curve, endpoint))


def _body(m: dict, config: dict, base: str, base_hub: str | None, repo_id: str | None, run_id: str | None,
          samples: Sequence[str], sample_url: str, has_curve: bool, endpoint: str) -> str:
    steps, shift = m.get("recommended_steps", 8), m.get("shift", 3.0)
    guidance = m.get("recommended_guidance", 1.0)
    load_from = repo_id or "path/to/final"
    kind = ADAPTER_NAMES.get(m.get("adapter_type") or "lora", "LoRA")
    title = f"{repo_id.split('/')[-1]}: an ACE-Step 1.5 {kind}" if repo_id else f"ACE-Step 1.5 {kind}"
    load = (f'pipe.load_lora_weights("{load_from}", adapter_name="style")' if m.get("adapter_type") != "lokr" else
            # diffusers' pipeline-level loader refuses LoKr keys; its transformer-level one reads them
            f'pipe.transformer.load_lora_adapter("{load_from}", weight_name="pytorch_lora_weights.safetensors",\n'
            '                                  prefix="transformer", adapter_name="style")')
    other = ("" if kind == "LoRA" else f" The ACE-Step UI reads it through peft (`PeftModel.from_pretrained`); tools "
             f"that read only plain LoRA files cannot use a {kind} adapter.")
    demo = ("\n> **Demo adapter:** trained on AceLoRA's tiny random-weights demo model. It produces noise, "
            "not music.\n" if m.get("demo_model") else "")
    base_md = f"[`{base}`]({endpoint}/{base})" if base_hub else f"`{base}`"
    trained = f"AceLoRA (run `{run_id}`)" if run_id else "AceLoRA"
    guidance_md = "no guidance (turbo has it distilled in)" if guidance <= 1.0 else f"guidance {guidance}"
    sample_md = ""
    if samples:
        rows = "\n".join(f'| `{n}` | <audio controls src="{sample_url}/{n}"></audio> |' for n in samples)
        sample_md = ("\n## Samples\n\nRendered during training (previews from fixed noise; A/B renders of the base "
                     f"model vs. this adapter where the file names pair up).\n\n| file | listen |\n|---|---|\n{rows}\n")
    download = (f"Download the repository and point the UI's LoRA path at the folder:\n\n```bash\n"
                f"hf download {repo_id} --local-dir {repo_id.split('/')[-1]}\n```\n" if repo_id else
                "Point the UI's LoRA path at this folder.\n")
    curve = "\n## Training loss\n\n![loss curve](loss_curve.png)\n" if has_curve else ""
    settings = {
        "base model": base, "variant": m.get("variant"),
        "rank / alpha / dropout": f"{m.get('rank')} / {m.get('alpha')} / {m.get('dropout')}",
        "targets": f"{', '.join(m.get('target_modules', []))} in {', '.join(m.get('target_blocks', []))}",
        "steps": m.get("steps"), "tracks": m.get("dataset_size"), "learning rate": m.get("learning_rate"),
        "timestep sampling": m.get("timestep_sampling"), "condition dropout": m.get("cond_dropout"),
        "batch size × accumulation": f"{config.get('batch_size', 1)} × {config.get('grad_accum', 1)}",
        "clip seconds": config.get("clip_seconds"), "seed": config.get("seed"),
    }
    table = "\n".join(f"| {k} | {v} |" for k, v in settings.items() if v not in (None, "", "None / None / None"))
    return f"""
# {title}
{demo}
A {kind} adapter for {base_md} ({m.get('variant', 'unknown variant')}), trained with {trained}.
Generate with **{steps} steps, shift {shift}, {guidance_md}**.
{sample_md}
## Use with diffusers

```python
import torch
from diffusers import AceStepPipeline

pipe = AceStepPipeline.from_pretrained("{base}", torch_dtype=torch.bfloat16).to("cuda")
{load}
audio = pipe(prompt="...", lyrics="[Instrumental]", audio_duration=30.0,
             num_inference_steps={steps}, shift={shift}, guidance_scale={guidance}).audios  # [batch, 2, samples]
```

Blend or switch adapters with `pipe.set_adapters(["style"], adapter_weights=[0.8])`; turn it off with `pipe.disable_lora()`.

## Use with the official ACE-Step UI, Side-Step or ComfyUI

`adapter_config.json` + `adapter_model.safetensors` are the original ACE-Step PEFT format
(`q_proj/k_proj/v_proj/o_proj` names).{other} {download}{curve}
## Training settings

| setting | value |
|---|---|
{table}

`training_meta.json` holds the full record (config hash, tensor count, files).
"""
