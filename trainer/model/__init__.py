"""Models in a job: choose device and dtype, resolve an id to a folder, load AceStepPipeline,
download from the Hub, import the original release layout, and build the tiny demo model. Uses
torch and diffusers; must not import Streamlit or ui. The catalog of known ids is state/model/.
"""
