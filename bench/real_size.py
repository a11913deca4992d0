"""The release 2B and XL models at their real sizes, measured on this CPU: parameters, and the GPU
memory and FLOPs of one LoRA training step.

    .venv/bin/python bench/real_size.py [--presets]

Per model: the parameters of the DiT, condition encoder, text encoder (Qwen3-Embedding-0.6B) and
VAE (AutoencoderOobleck at the release config), counted on the meta device (state/train/shapes.py
cites each config). Then one training step on fake tensors (trainer/train/fake_step.py) for clips of
30, 60 and 240 s, with and without gradient checkpointing, at rank 64 and the training defaults
otherwise (q/k/v/out of self- and cross-attention, LoRA dropout 0.1, 8-bit AdamW, batch 1, bf16 base,
conditioning at its longest: 2305 tokens):
  *_peak_gb         the allocator peak, what torch.cuda.max_memory_allocated reports on a GPU
  *_on_card_gb      that peak plus allocator slack and the CUDA context (state/train/preflight.py)
  *_tflop           FLOPs of the step (forward, backward, the checkpointed recompute)
  *_min_step_s      the step time at 100% of a 790 TFLOP/s bf16 GPU: a lower bound
Then the same DiT with an int8 base (`base_quant: int8`, trainer/train/quant.py: torchao weight-only on
the blocks' Linears), its weights quantised on the meta device and summed from the quantised module's own
tensors (int8 data, per-row scales), beside the bf16 module's:
  *_dit_weights_{bf16,int8}_gb   bytes of the DiT's parameters and buffers
  *_dit_int8_param_share         share of the DiT's parameters in quantised Linears
  *_int8_*_peak_gb / _on_card_gb the fake-tensor step with the int8 base (clips 60 and 240 s checkpointed,
                                 60 s without), and whether it fits the 16 GB target (on_card <= 16)
--presets also measures every preset of state/train/preflight.py (PRESET_PEAK_GB), on the model size
PRESET_MODEL_SIZE names. The XL half runs in a second process, so the run uses both cores. Wall and
CPU time (both processes) close the output; CPU time is the figure that stays meaningful on a busy
machine.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REFERENCE_TFLOPS = 790.0
CLIPS_S = (30, 60, 240)
INT8_RUNS = ((60, True), (240, True), (60, False))  # (clip seconds, gradient checkpointing)
TARGET_GB = 16.0  # the target card for the XL LoRA with an int8 base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", action="store_true", help="also measure the presets (2B, their own settings)")
    ap.add_argument("--model", choices=("2B", "XL"), help="measure only this model (the XL half runs this way "
                    "in a second process, so the two halves use both cores)")
    args = ap.parse_args()
    wall0 = time.time()
    if args.model:
        measure_model(args.model)
        return
    xl = subprocess.Popen([sys.executable, __file__, "--model", "XL"], stdout=subprocess.PIPE, text=True)
    measure_model("2B")
    if args.presets:
        measure_presets()
    sys.stdout.write(xl.communicate()[0])
    if xl.returncode:
        raise SystemExit(f"the XL half failed (exit {xl.returncode})")
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"wall_s: {time.time() - wall0:.1f}")
    print(f"cpu_s: {me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime:.1f}")


def measure_model(size: str) -> None:
    from state.train import estimates, preflight, shapes
    from trainer.train.fake_step import StepRig
    from trainer.train.shapes import release_param_counts

    for part, n in release_param_counts(size).items():
        print(f"{size}_{part}_params: {n}", flush=True)
    settings = estimates.settings_for({"rank": 64, "alpha": 64.0}, dtype="bf16")
    rig = StepRig(shapes.RELEASE[size]["transformer"], settings)
    for seconds in CLIPS_S:
        for ckpt in (True, False):
            r = rig.measure(round(seconds * shapes.LATENTS_PER_SECOND), 1, ckpt, shapes.COND_TOKENS)
            name = f"{size}_{seconds}s_{'ckpt' if ckpt else 'no_ckpt'}"
            print(f"{name}_peak_gb: {r['peak_allocated_mb'] / 1024:.2f}")
            print(f"{name}_on_card_gb: {preflight.gpu_total_gb(r['peak_allocated_mb']):.1f}")
            print(f"{name}_tflop: {r['flops_per_micro_batch'] / 1e12:.2f}")
            print(f"{name}_min_step_s: {r['flops_per_micro_batch'] / (REFERENCE_TFLOPS * 1e12):.4f}", flush=True)
    measure_int8(size)


def measure_int8(size: str) -> None:
    import torch

    from state.train import estimates, preflight, shapes
    from trainer.train import shapes as dit_shapes
    from trainer.train.fake_step import StepRig
    from trainer.train.quant import is_base_linear, quantize_base, weight_bytes

    dit = dit_shapes.build_dit(shapes.RELEASE[size]["transformer"], torch.bfloat16)
    print(f"{size}_dit_weights_bf16_gb: {weight_bytes(dit) / 2**30:.2f}")
    in_linears = sum(m.weight.numel() for n, m in dit.named_modules() if is_base_linear(m, n))
    quantize_base(dit, "int8")
    print(f"{size}_dit_weights_int8_gb: {weight_bytes(dit) / 2**30:.2f}")
    print(f"{size}_dit_int8_param_share: {in_linears / dit_shapes.n_params(dit):.3f}", flush=True)
    rig = StepRig(shapes.RELEASE[size]["transformer"],
                  estimates.settings_for({"rank": 64, "alpha": 64.0, "base_quant": "int8"}, dtype="bf16"))
    for seconds, ckpt in INT8_RUNS:
        r = rig.measure(round(seconds * shapes.LATENTS_PER_SECOND), 1, ckpt, shapes.COND_TOKENS)
        name = f"{size}_int8_{seconds}s_{'ckpt' if ckpt else 'no_ckpt'}"
        on_card = preflight.gpu_total_gb(r["peak_allocated_mb"])
        print(f"{name}_peak_gb: {r['peak_allocated_mb'] / 1024:.2f}")
        print(f"{name}_on_card_gb: {on_card:.1f}")
        print(f"{name}_fits_{TARGET_GB:.0f}gb: {'yes' if on_card <= TARGET_GB else 'no'}", flush=True)


def measure_presets() -> None:
    from state.train import estimates, preflight, shapes
    from trainer.train.fake_step import StepRig

    for name, overrides in preflight.PRESETS.items():
        s = estimates.settings_for(overrides, dtype="bf16")
        dit = shapes.RELEASE[preflight.PRESET_MODEL_SIZE.get(name, "2B")]["transformer"]
        r = StepRig(dit, s).measure(s["frames"], s["batch_size"], s["gradient_checkpointing"], s["cond_tokens"])
        print(f"preset {name!r} peak_gb: {r['peak_allocated_mb'] / 1024:.2f}")
        print(f"preset {name!r} on_card_gb: {preflight.gpu_total_gb(r['peak_allocated_mb']):.1f}", flush=True)


if __name__ == "__main__":
    main()
