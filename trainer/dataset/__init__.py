"""What a job does with a dataset: decode any audio file to 48 kHz stereo and turn manifest rows
into the latents and conditioning the DiT trains on, with the two-level cache. Uses torch and the
pipeline; must not import Streamlit or ui. The manifest and sidecars themselves are state/dataset/.
"""
