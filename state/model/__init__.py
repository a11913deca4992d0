"""What the dashboard knows about models without loading one: the catalog of ACE-Step 1.5
models (Hub ids, variants, sizes, inference defaults, whether an id is confirmed). Stdlib only:
it must not import torch, diffusers, transformers, peft, bitsandbytes or Streamlit. Downloading,
importing and loading models is trainer/model/'s job.
"""
