"""Auto-labelling in a job: signal labels measured from the audio, 5 Hz audio codes, the ACE-Step
5 Hz LM's "understand" answer and its parser, and the `label` job that writes them through the
user-edit policy of state/label/. May use torch, librosa and transformers; must not import
Streamlit or ui.
"""
