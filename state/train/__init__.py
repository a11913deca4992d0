"""Training as the dashboard sees it: the training config and its validation, presets and the
preflight checks, the release models' shapes and the cached memory/FLOP estimates of a step,
and the runs under lora_output/ (listing, start, resume, delete, downloads).
Stdlib only: it must not import torch, diffusers, transformers, peft, bitsandbytes or Streamlit;
the loop itself is trainer/train/.
"""
