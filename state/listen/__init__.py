"""Listening to what a run learned: A/B comparison requests and their folders, the blind
mapping, votes, and the training previews on disk. Stdlib only: it must not import torch,
diffusers, transformers, peft, bitsandbytes or Streamlit (pictures of audio are ui/'s); rendering
audio is trainer/listen/.
"""
