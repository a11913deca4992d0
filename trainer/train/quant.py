"""The frozen base in int8 under a full-precision adapter (`base_quant: int8`), for small GPUs.

torchao's int8 weight-only quantisation (`Int8WeightOnlyConfig`: one int8 per weight plus a scale per
output row) replaces the weight of every Linear in the DiT blocks; peft then wraps those Linears as it
always does (its `TorchaoLoraLinear` for LoRA and DoRA), and the adapter's own weights stay fp32. Why
torchao: peft dispatches LoRA onto torchao tensors itself, it runs on CPU (so the tests train on it) and on
any CUDA GPU (the weight-only matmul is plain PyTorch ops), and it quantises a module that is already
loaded. optimum-quanto has no peft LoRA layer; bitsandbytes is CUDA only.

Only the blocks' Linears (`layers.N.*`: attention and MLP, 96 % of the 2B DiT's parameters and 98 % of the
XL's, counted by bench/real_size.py) are quantised; the timestep and condition embedders, to which a
diffusion model is most sensitive, the patch convolutions and the norms stay in the run's dtype.

Memory: the int8 weights take half of bf16's bytes. The weight-only matmul converts each weight to the
activation dtype as it runs, and autograd keeps that converted copy for backward, so a step without gradient
checkpointing holds every block's weights in bf16 again (the fake-tensor estimate counts this; see
bench/real_size.py). With checkpointing on, only the block being recomputed holds its copy.
"""
from __future__ import annotations

import warnings

import torch

from state.train.config import BASE_QUANTS  # the one list of modes, "none" included


def is_base_linear(module: torch.nn.Module, name: str) -> bool:
    """A frozen base Linear of a DiT block; never an adapter's own layer (`lora_A`, ...)."""
    return isinstance(module, torch.nn.Linear) and name.startswith("layers.") and "lora_" not in name


def quantize_base(transformer: torch.nn.Module, base_quant: str, device: torch.device | None = None) -> int:
    """Quantise the DiT blocks' Linear weights in place, before the adapter is attached; returns how many.

    `device`: each Linear moves there before it is quantised, so a bf16 copy of the whole DiT never sits
    on the GPU (the rest of the model stays where it is until the caller moves it).
    """
    if base_quant == "none":
        return 0
    if base_quant not in BASE_QUANTS:
        raise ValueError(f"base_quant {base_quant!r}: use one of {', '.join(BASE_QUANTS)}")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    # peft warns that merge() needs torchao's requantisation recipe; training never merges in this process
    # (the merged export reloads the base in full precision, trainer/train/export.py)
    warnings.filterwarnings("ignore", message="TorchaoLoraLinear was instantiated without")
    targets = [n for n, m in transformer.named_modules() if is_base_linear(m, n)]
    # set_inductor_config=False: torchao would otherwise change torch.compile's global settings
    quantize_(transformer, Int8WeightOnlyConfig(set_inductor_config=False), filter_fn=is_base_linear, device=device)
    return len(targets)


def is_quantized(weight: torch.Tensor) -> bool:
    from torchao.utils import TorchAOBaseTensor

    return isinstance(weight, TorchAOBaseTensor)


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes the module's parameters and buffers occupy, a quantised weight counted by its inner tensors
    (int8 data and scales), which is what it holds in memory."""
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass  # no torchao import on a plain run

    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        if is_traceable_wrapper_subclass(t):
            names, _ = t.__tensor_flatten__()
            total += sum(getattr(t, n).nbytes for n in names)
        else:
            total += t.nbytes
    return total
