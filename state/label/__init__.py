"""Auto-labelling as the dashboard knows it: the label job's options, which labelling models are
on this machine, and the user-edit policy (which fields a run may write). Stdlib only: it must
not import torch, diffusers, transformers, peft, bitsandbytes, librosa or Streamlit; measuring
and asking the LM is trainer/label/.
"""
