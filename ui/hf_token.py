"""The Hugging Face token: the HF_TOKEN secret, or one typed into any password field this session.

Typed once (sidebar or Publish page), it serves every Hub action of the session. It lives only in
session state and reaches jobs through their environment; nothing here writes it anywhere.
"""
from __future__ import annotations

import os

import streamlit as st

SESSION_KEY = "hf_token"


def token() -> str | None:
    return os.environ.get("HF_TOKEN") or st.session_state.get(SESSION_KEY) or None


def field(key: str, label: str = "Hugging Face token (write)", env_note: str = "Using the HF_TOKEN secret.") -> None:
    """A password field (widget key `key`) feeding the session's shared token; a note when HF_TOKEN is set."""
    if os.environ.get("HF_TOKEN"):
        st.caption(env_note)
        return

    def _share() -> None:
        st.session_state[SESSION_KEY] = st.session_state.get(key) or None

    st.text_input(label, type="password", key=key, on_change=_share,
                  value=st.session_state.get(SESSION_KEY) or "",
                  help="Kept only in this browser session and handed to jobs through their environment; never "
                       "saved. Create one at huggingface.co/settings/tokens, or add HF_TOKEN as a Space secret.")
