"""One LoRA training step of the real DiT at the real size on fake tensors: peak GPU memory and FLOPs.

The DiT is the diffusers class built on the meta device from its config (exact parameter count), the
adapter is attached by `trainer.train.adapter.add_lora` exactly as training does, and the step runs
the real objective (`make_batch`, `compute_loss`), backward, gradient clipping and the optimizer
update under `FakeTensorMode`: every op computes shapes and dtypes only, so a 4 B-parameter step
takes seconds and no memory. What it measures:

- Memory: `Meter` (a FakeTensorMode) adds up the bytes of every live storage, each rounded up to
  512 bytes as CUDA's caching allocator does (kMinBlockSize in c10/cuda/CUDACachingAllocator.cpp),
  and keeps the peak: the figure `torch.cuda.max_memory_allocated` reports on a GPU. Not included:
  the CUDA context and the allocator's unused cached blocks (see state/train/preflight.py).
- FLOPs: the formulas `torch.utils.flop_counter` registers, applied in the same mode
  (tests/train/test_estimate.py checks the count equals `FlopCounterMode`'s).

Attention. On CPU, `scaled_dot_product_attention` runs a kernel whose memory is not a GPU's (the
"math" fallback materialises the (T x T) score matrix per head; a 240 s clip is 3000 tokens, so
16 heads x 3000^2 x 4 bytes = 576 MB per attention call, tens of GB over a step). On a CUDA GPU the
ACE-Step DiT's calls all go to fused kernels: flash / cuDNN for the unmasked full-attention and
cross-attention layers in bf16/fp16, memory-efficient attention for the sliding-window layers (they
carry an additive (T x T) mask) and for fp32; all of them accept the DiT's grouped-query heads (PyTorch's
aten/src/ATen/native/transformers/cuda/sdp_utils.cpp) and keep only the output and a (B, heads, T)
log-sum-exp for backward. `fused_attention` routes every SDPA call to aten's flash-attention op, whose
meta kernels allocate exactly that (and q/k/v-shaped gradients in backward) and accept grouped-query
heads, and whose autograd formula saves q, k, v, output and log-sum-exp, as the fused kernels do;
for the masked layers `_HoldMask` also keeps the mask saved, as the memory-efficient kernel does, after
the copy CUDA makes of it when T is not a multiple of 16 (preprocess_mask / pad_bias in
aten/src/ATen/native/transformers/attention.cpp). The mask itself is a real (T x T) tensor the model
builds, so it is counted too. (cuDNN attention, preferred on H100/H200 with a recent cuDNN, takes the
mask unpadded: there the estimate is high by one padded mask per sliding layer.) FLOPs are the full
(T x T) product for every layer: the memory-efficient kernel does not skip masked blocks.

Precision. Fake tensors live on the CPU, so the step runs under CPU autocast with the run's dtype.
The ops of this model land in the same precision as under CUDA autocast: linear / matmul / conv
lower precision, RMSNorm computed in fp32 by the model itself, the loss in fp32.

Optimizers. torch AdamW runs as the fused implementation (what the loop uses on CUDA). bitsandbytes'
AdamW8bit cannot run on fake tensors; its states are allocated by the formula in `adamw8bit_state`.
"""
from __future__ import annotations

import math
import time
import weakref
from contextlib import ExitStack, contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import is_traceable_wrapper_subclass
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from state.train.config import TrainConfig
from trainer.train import shapes
from trainer.train.adapter import add_lora
from trainer.train.objective import Objective, compute_loss, make_batch
from trainer.train.quant import quantize_base

ALLOC_ROUND = 512  # bytes; CUDA's caching allocator rounds every block up to this (kMinBlockSize)
MEM_EFF_ALIGNMENT = 16  # the memory-efficient kernel wants the mask's last dim a multiple of this
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_PRIM_DEVICE = torch.ops.prim.device.default
_aten = torch.ops.aten


class Meter(FakeTensorMode):
    """A FakeTensorMode that also counts live storage bytes (peak, by label) and FLOPs.

    Counting here rather than in a second dispatch mode halves the step's time: a fake step is
    Python overhead per op, and a 2B step dispatches ~65,000 ops (most of them `prim.device`).
    Only top-level ops are counted; ops a fake kernel decomposes into are its implementation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[int, str]] = {}  # id(storage) -> (bytes, label)
        self.by_label: dict[str, int] = {}
        self.now = self.peak = self.flops = 0
        self.peak_by_label: dict[str, int] = {}
        self.label = "activations"  # what new storages are, until told otherwise
        self.counting = False       # FLOPs are counted only for the measured step
        self._depth = 0

    def track(self, t: torch.Tensor, label: str | None = None) -> None:
        st = t.untyped_storage()
        key = id(st)
        if key in self.live:
            return
        n = -(-st.nbytes() // ALLOC_ROUND) * ALLOC_ROUND
        label = label or self.label
        self.live[key] = (n, label)
        self.by_label[label] = self.by_label.get(label, 0) + n
        self.now += n
        weakref.finalize(st, self._free, key)
        if self.now > self.peak:
            self.peak = self.now
            self.peak_by_label = dict(self.by_label)

    def relabel(self, t: torch.Tensor, label: str) -> None:
        key = id(t.untyped_storage())
        if key in self.live:
            n, old = self.live[key]
            self.live[key] = (n, label)
            self.by_label[old] -= n
            self.by_label[label] = self.by_label.get(label, 0) + n

    def reset_peak(self) -> None:
        self.peak, self.peak_by_label, self.flops = self.now, dict(self.by_label), 0

    def _free(self, key: int) -> None:
        n, label = self.live.pop(key)
        self.by_label[label] -= n
        self.now -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is _PRIM_DEVICE:  # a third of all calls; FakeTensorMode answers it the same way, slower
            t = args[0]
            return torch.device("meta") if t.fake_mode.in_kernel_invocation else t.fake_device
        return super().__torch_dispatch__(func, types, args, kwargs or {})

    def dispatch(self, func, types, args=(), kwargs=None):
        self._depth += 1
        try:
            out = super().dispatch(func, types, args, kwargs)
        finally:
            self._depth -= 1
        if self._depth == 0:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.track(t)
            formula = flop_registry.get(func._overloadpacket) if self.counting else None
            if formula is not None:
                self.flops += formula(*args, **(kwargs or {}), out_val=out)
        return out


class _HoldMask(torch.autograd.Function):
    """Identity on the attention output that keeps the additive mask saved for backward, as the
    memory-efficient kernel does (it saves its attn_bias); flash has no mask to save."""

    @staticmethod
    def forward(ctx, out, mask):
        ctx.save_for_backward(mask)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out, None


def _fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                enable_gqa=False):
    """F.scaled_dot_product_attention with a fused CUDA kernel's memory (the module docstring says why)."""
    if dropout_p or is_causal:
        raise NotImplementedError("the ACE-Step DiT uses neither attention dropout nor causal attention")
    out = _aten._scaled_dot_product_flash_attention(query, key, value, 0.0, False, False, scale=scale)[0]
    if attn_mask is None:
        return out
    n = attn_mask.shape[-1]
    if n % MEM_EFF_ALIGNMENT:  # CUDA's preprocess_mask: a padded copy of the mask per call (pad_bias)
        attn_mask = F.pad(attn_mask, (0, MEM_EFF_ALIGNMENT - n % MEM_EFF_ALIGNMENT))[..., :n]
    return _HoldMask.apply(out, attn_mask)


@contextmanager
def fused_attention():
    """Route F.scaled_dot_product_attention (diffusers' native attention backend) to `_fused_sdpa`.

    A patch of the function rather than a TorchFunctionMode: the autograd engine runs a checkpointed
    block's recomputation without the caller's function modes, so a mode would route the forward and
    not its recomputation (and checkpoint refuses a recomputation that saves different tensors).
    """
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _fused_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def adamw8bit_state(numel: int) -> list[tuple[int, torch.dtype]]:
    """The tensors bitsandbytes' AdamW8bit keeps for one parameter of `numel` elements, as (numel, dtype)
    (bitsandbytes 0.50 optim/optimizer.py, Optimizer2State.init_state):

        numel < min_8bit_size (4096):  state1, state2 in fp32           8 bytes per element
        otherwise:                     state1, state2 in uint8          2 bytes per element
                                       absmax1, absmax2: fp32 per 256-element block
    The two 256-entry quantisation maps are shared by all parameters (2 KB in all) and left out.
    """
    if numel < 4096:
        return [(numel, torch.float32)] * 2
    blocks = math.ceil(numel / 256)
    return [(numel, torch.uint8)] * 2 + [(blocks, torch.float32)] * 2


def train_config(s: dict) -> TrainConfig:
    """The TrainConfig an estimate's settings stand for (what add_lora and the objective read)."""
    return TrainConfig(rank=s["rank"], alpha=float(s["rank"]), dropout=0.1 if s["lora_dropout"] else 0.0,
                       target_modules=list(s["target_modules"]), target_blocks=list(s["target_blocks"]),
                       optimizer=s["optimizer"], batch_size=s["batch_size"],
                       gradient_checkpointing=s["gradient_checkpointing"], base_quant=s.get("base_quant", "none"))


def measure(request: dict) -> dict:
    """Peak memory and FLOPs of one training micro-batch for a request of state.train.estimates."""
    s = request["settings"]
    return StepRig(request["transformer"], s).measure(s["frames"], s["batch_size"], s["gradient_checkpointing"],
                                                       s["cond_tokens"])


class StepRig:
    """The fake model, adapter and optimizer state for one (DiT, adapter, dtype, optimizer); `measure`
    runs one step at a clip length. Building is a few seconds, so the bench reuses one rig per model."""

    def __init__(self, dit_config: dict, settings: dict) -> None:
        t0 = time.process_time()
        self.dit_config, self.cfg, self.dtype = dit_config, train_config(settings), DTYPES[settings["dtype"]]
        # the model on the meta device, quantised and given the adapter as training does, then fake storage
        self.transformer = shapes.build_dit(dit_config, self.dtype)
        self.dit_params = shapes.n_params(self.transformer)
        quantize_base(self.transformer, self.cfg.base_quant)  # meta tensors in, meta int8 data and scales out
        add_lora(self.transformer, self.cfg)
        self.transformer.train()
        self.meter = meter = Meter()
        with meter:
            _materialize(self.transformer, meter)
        self.lora = [p for n, p in self.transformer.named_parameters() if "lora_" in n]
        for p in self.lora:
            p.register_post_accumulate_grad_hook(lambda p: meter.relabel(p.grad, "grads"))
        # optimizer state exists before every step after the first: allocate it up front
        with meter:
            meter.label = "optimizer"
            if self.cfg.optimizer == "adamw":
                self.optimizer = torch.optim.AdamW(self.lora, lr=self.cfg.learning_rate,
                                                   weight_decay=self.cfg.weight_decay, fused=True)
                for p in self.lora:
                    p.grad = torch.zeros_like(p)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            else:  # bitsandbytes cannot run on fake tensors: its state, allocated by the formula
                self.optimizer = None
                self.state_8bit = [torch.empty(n, dtype=dt) for p in self.lora for n, dt in adamw8bit_state(p.numel())]
            meter.label = "activations"
            self.enc_dim = dit_config.get("encoder_hidden_size") or dit_config["hidden_size"]
            self.null_emb = torch.zeros(1, 1, self.enc_dim)
        self.obj = Objective.for_model(self.cfg, self.transformer)
        self.setup_s = time.process_time() - t0

    def measure(self, frames: int, batch_size: int, checkpointing: bool, cond_tokens: int,
                extra_modes: tuple = ()) -> dict:
        """One step of `batch_size` clips of `frames` latent frames. `extra_modes` are entered inside
        the fake mode for the step (a test passes FlopCounterMode to cross-check the FLOP count)."""
        t0 = time.process_time()
        dit, meter = self.transformer, self.meter
        if checkpointing:
            dit.enable_gradient_checkpointing()
        else:
            dit.disable_gradient_checkpointing()
        # the batch: cached tracks are small host tensors; make_batch runs on real ones, then they move
        acoustic = self.dit_config["audio_acoustic_hidden_dim"]
        track = {"latents": torch.zeros(frames, acoustic),
                 "context_latents": torch.zeros(frames, self.dit_config["in_channels"] - acoustic),
                 "encoder_hidden_states": torch.zeros(cond_tokens, self.enc_dim),
                 "encoder_attention_mask": torch.ones(cond_tokens, dtype=torch.bool)}
        host_batch = make_batch([track] * batch_size, frames, torch.device("cpu"))
        autocast = torch.autocast("cpu", dtype=self.dtype) if self.dtype != torch.float32 else nullcontext()
        with meter, fused_attention(), ExitStack() as extra:
            for mode in extra_modes:
                extra.enter_context(mode)
            batch = {k: _to_device(v) for k, v in host_batch.items()}
            meter.reset_peak()
            meter.counting = True
            with autocast:
                loss = compute_loss(dit, batch, self.null_emb, self.obj, self.dtype)
            loss.backward()
            meter.counting = False
            torch.nn.utils.clip_grad_norm_(self.lora, self.cfg.max_grad_norm, foreach=True)
            if self.optimizer is not None:
                self.optimizer.step()
            for p in self.lora:
                p.grad = None
            del loss, batch
        mb = 2 ** 20
        return {
            "peak_allocated_mb": round(meter.peak / mb, 1),
            "peak_breakdown_mb": {k: round(v / mb, 1) for k, v in sorted(meter.peak_by_label.items()) if v},
            "flops_per_micro_batch": int(meter.flops),
            "dit_params": self.dit_params,
            "trainable_params": sum(p.numel() for p in self.lora),
            "tokens": math.ceil(frames / self.dit_config["patch_size"]),
            "cpu_seconds": {"setup": round(self.setup_s, 1), "step": round(time.process_time() - t0, 1)},
            "torch": torch.__version__,
            "attention": "fused-kernel memory (flash / memory-efficient), see trainer/train/fake_step.py",
        }


def _materialize(module: torch.nn.Module, meter: Meter) -> None:
    """Give every meta parameter and buffer fake storage (inside `meter`), labelled weights or adapter."""
    for name, mod in module.named_modules():
        for key, p in list(mod._parameters.items()):
            if p is not None and is_traceable_wrapper_subclass(p):  # a quantised weight: its inner tensors
                mod._parameters[key] = torch.nn.Parameter(_fake_subclass(p, meter), requires_grad=False)
            elif p is not None:
                fake = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=p.requires_grad)
                mod._parameters[key] = fake
                meter.relabel(fake, "adapter" if "lora_" in f"{name}.{key}" else "weights")
        for key, b in list(mod._buffers.items()):
            if b is not None:
                mod._buffers[key] = torch.empty(b.shape, dtype=b.dtype)
                meter.relabel(mod._buffers[key], "weights")


def _fake_subclass(t: torch.Tensor, meter: Meter) -> torch.Tensor:
    """A torchao tensor rebuilt around fake inner tensors (int8 data, scales), labelled weights."""
    names, ctx = t.__tensor_flatten__()
    inner = {n: torch.empty(getattr(t, n).shape, dtype=getattr(t, n).dtype) for n in names}
    for v in inner.values():
        meter.relabel(v, "weights")
    return type(t).__tensor_unflatten__(inner, ctx, t.size(), t.stride())


def _to_device(v):
    """The host-to-GPU copy of one batch tensor: a new fake tensor of the same shape and dtype."""
    return torch.empty(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) else v
