"""The Hugging Face side, torch-free: one Hub error mapping and the token rule, Space hardware,
prices and cost controls, runs trained on HF Jobs (remote_jobs). Stdlib plus huggingface_hub only: it must not import torch, diffusers,
transformers, peft, bitsandbytes or Streamlit. Uploads, syncs and watchers that run as jobs are
trainer/cloud/.
"""
