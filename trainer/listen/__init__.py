"""Rendering audio to listen to: generation with and without an adapter (the `ab` job), loudness
matching, and training previews (the `sample` job). Uses torch and diffusers; must not import
Streamlit or ui. Requests, blind mapping and votes are state/listen/.
"""
