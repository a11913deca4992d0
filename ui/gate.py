"""APP_PASSWORD gate: when the variable is set, no page is even registered until the password is right.

A public Space URL is reachable by anyone; the dashboard can start paid GPU work and read the
HF_TOKEN secret's reach, so a Space owner sets APP_PASSWORD (a Space secret) to lock it. While
locked, the app's only page is the sign-in form (st.navigation gets that one page), so a direct
link to /train or /publish lands on the form too, instead of running the page.
"""
from __future__ import annotations

import hashlib
import hmac
import os

import streamlit as st

_OK = "gate_ok"  # session key: a digest of the password that was accepted (a changed password re-locks)


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def unlocked() -> bool:
    expected = os.environ.get("APP_PASSWORD")
    return not expected or hmac.compare_digest(st.session_state.get(_OK, ""), _digest(expected))


def _sign_in() -> None:
    expected = os.environ.get("APP_PASSWORD", "")
    st.title("AceLoRA")
    st.info("This dashboard is password protected (APP_PASSWORD).")
    with st.form("gate_form"):
        typed = st.text_input("Password", type="password", key="gate_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        # compare_digest: the time taken does not reveal how much of the password was right
        if hmac.compare_digest(typed.encode("utf-8"), expected.encode("utf-8")):
            st.session_state[_OK] = _digest(expected)
            st.rerun()
        st.error("Wrong password.")


def require_password() -> None:
    """Return if the session may see the app; otherwise show only the sign-in page and stop."""
    if unlocked():
        return
    st.navigation([st.Page(_sign_in, title="Sign in", url_path="sign-in")], position="hidden").run()
    st.stop()
