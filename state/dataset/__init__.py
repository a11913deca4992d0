"""Datasets as the dashboard knows them: the manifest, sidecars, label fields and their
normalisation, audio probing, browser uploads and CSV label import. Stdlib (plus soundfile for
probing) only: it must not import torch, diffusers, transformers, peft, bitsandbytes or Streamlit.
Turning a dataset into tensors is trainer/dataset/'s job.
"""
