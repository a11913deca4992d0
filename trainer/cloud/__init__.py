"""Jobs that talk to the Hugging Face Hub: publish a run, sync a run for a Space without storage
and restore it, and watch a Space to pause it when the queue ends. Uses huggingface_hub (torch
only where an export needs it); must not import Streamlit or ui. Error mapping and prices are
state/cloud/.
"""
