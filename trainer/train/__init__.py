"""The training job: the loop, the model's own objective, the LoRA adapter, checkpoints, export
of final/ and step telemetry. Uses torch, diffusers, peft and bitsandbytes; must not import
Streamlit or ui. The config it runs is state/train/config.py.
"""
