"""Rendering audio to listen to: generation with and without an adapter (the `ab` job), loudness
matching, and training previews (rendered inside the training job). Uses torch and diffusers; must not import
Streamlit or ui. Requests, blind mapping and votes are state/listen/.
"""
