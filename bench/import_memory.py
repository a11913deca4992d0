"""Peak memory of importing a sharded original-layout DiT (trainer/model/convert.py), measured in one run.

Writes a DiT-shaped checkpoint in the release layout (random bf16 weights, 4 shards + index, like
the XL DiTs), then imports it in a fresh process and reports the peak resident memory above the
process's baseline (torch and diffusers loaded), as a multiple of the weights' size. For contrast,
a second fresh process does what a whole-state-dict importer does: every shard into one dict,
modules built with real (fp32) weights, then load_state_dict.

    .venv/bin/python bench/import_memory.py [--hidden 1024 --layers 8]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_checkpoint(root: Path, hidden: int, layers: int) -> tuple[Path, int]:
    import torch
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    from trainer.model import convert
    from trainer.model.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline()  # its VAE and text encoder stand in for the release's
    attn = dict(num_attention_heads=hidden // 128, num_key_value_heads=hidden // 256, head_dim=128, sliding_window=128)
    t = AceStepTransformer1DModel(hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
                                  in_channels=24, audio_acoustic_hidden_dim=8, patch_size=2, model_version="base", **attn)
    c = AceStepConditionEncoder(hidden_size=hidden, intermediate_size=3 * hidden, text_hidden_dim=32,
                                timbre_hidden_dim=8, num_lyric_encoder_hidden_layers=2,
                                num_timbre_encoder_hidden_layers=1, **attn)
    sd = {k: v.to(torch.bfloat16).contiguous()
          for k, v in convert.to_original_state_dict(t.state_dict(), c.state_dict()).items()}
    weights = sum(v.numel() * v.element_size() for v in sd.values())
    dit = root / "checkpoints" / "acestep-v15-xl-base"
    dit.mkdir(parents=True)
    cfg = {k: t.config[k] for k in convert.TRANSFORMER_CONFIG_KEYS}
    cfg.update({k: c.config[k] for k in convert.CONDITION_CONFIG_KEYS if k not in cfg}, model_version="base")
    (dit / "config.json").write_text(json.dumps(cfg))
    split = split_torch_state_dict_into_shards(sd, max_shard_size=weights // 4 + 1)
    for name, keys in split.filename_to_tensors.items():
        save_file({k: sd[k] for k in keys}, str(dit / name), metadata={"format": "pt"})
    (dit / convert.SHARD_INDEX).write_text(json.dumps({"metadata": split.metadata, "weight_map": split.tensor_to_filename}))
    torch.save(c.silence_latent[:, :750].transpose(1, 2).contiguous(), dit / "silence_latent.pt")
    pipe.vae.save_pretrained(dit.parent / "vae")
    pipe.text_encoder.save_pretrained(dit.parent / convert.TEXT_ENCODER_DIR)
    pipe.tokenizer.save_pretrained(dit.parent / convert.TEXT_ENCODER_DIR)
    return dit.parent, weights


CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import psutil, torch
from accelerate import init_empty_weights
from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
from diffusers.pipelines.ace_step import AceStepConditionEncoder
from safetensors.torch import load_file
from trainer.model import convert
ckpt, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
base = psutil.Process().memory_info().rss
t0 = time.time()
if mode == "shard_by_shard":
    convert.import_original(ckpt, out)
else:  # the whole-state-dict way: every shard in one dict, real modules, then a copying load
    from pathlib import Path
    dit = convert.find_dit_dir(Path(ckpt))
    sd = {{}}
    for f in convert.dit_weight_files(dit):
        sd.update(load_file(str(f)))
    t_sd, c_sd, _ = convert.split_original_state_dict(sd)
    original = json.loads((dit / "config.json").read_text())
    shapes = {{k: tuple(v.shape) for k, v in c_sd.items()}}
    t = AceStepTransformer1DModel(**convert.transformer_config(original, shapes))
    c = AceStepConditionEncoder(**convert.condition_config(original, shapes))
    t.load_state_dict(t_sd); c.load_state_dict(c_sd, strict=False)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"base": base, "peak": hwm, "s": time.time() - t0}}))
"""


def measure(ckpt: Path, mode: str, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(ckpt), mode, str(out)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        ckpt, weights = write_checkpoint(Path(tmp), args.hidden, args.layers)
        print(f"checkpoint_write_s: {time.time() - t0:.1f}")
        print(f"dit_weights_mb: {weights / 2**20:.0f}")
        for mode in ("shard_by_shard", "whole_state_dict"):
            m = measure(ckpt, mode, Path(tmp) / f"out-{mode}")
            print(f"{mode}_peak_above_baseline_mb: {(m['peak'] - m['base']) / 2**20:.0f}")
            print(f"{mode}_peak_over_weights: {(m['peak'] - m['base']) / weights:.2f}")
            print(f"{mode}_s: {m['s']:.1f}")
    print(f"bench_peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
