"""APP_PASSWORD gate: when the variable is set, no page is even registered until the password is right.

A public Space URL is reachable by anyone; the dashboard can start paid GPU work and read the
HF_TOKEN secret's reach, so a Space owner sets APP_PASSWORD (a Space secret) to lock it. While
locked, the app's only page is the sign-in form (st.navigation gets that one page), so a direct
link to /train or /publish lands on the form too, instead of running the page.

This gate covers pages only: Streamlit's upload and media routes are plain HTTP it never sees. The
container therefore serves through scripts/serve.py, where nginx asks for the password on every
route; requests that come through it carry a per-start secret header, and then this gate does not
ask a second time. Wrong passwords are limited here too (for `streamlit run` without the proxy):
after a few, each further try waits longer, for every session of this process together.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time

import streamlit as st

_OK = "gate_ok"  # session key: a digest of the password that was accepted (a changed password re-locks)
PROXY_HEADER = "X-AceLoRA-Proxy-Auth"  # scripts/serve.py's nginx sets it; must match there
NONCE_ENV = "ACELORA_PROXY_NONCE"
FREE_TRIES = 5  # wrong passwords before the wait starts
MAX_WAIT_S = 300.0

_fails = {"count": 0, "until": 0.0}  # process-wide: a new session (or tab) does not reset it
_fails_lock = threading.Lock()
_now = time.monotonic


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def _through_proxy() -> bool:
    nonce = os.environ.get(NONCE_ENV)
    if not nonce:
        return False
    try:
        got = st.context.headers.get(PROXY_HEADER) or ""
    except Exception:  # noqa: BLE001 - no request context (bare mode): not through the proxy
        return False
    return hmac.compare_digest(got.encode(), nonce.encode())


def unlocked() -> bool:
    expected = os.environ.get("APP_PASSWORD")
    if not expected or _through_proxy():
        return True
    return hmac.compare_digest(st.session_state.get(_OK, ""), _digest(expected))


def wait_left() -> float:
    with _fails_lock:
        return max(0.0, _fails["until"] - _now())


def _record(ok: bool) -> None:
    with _fails_lock:
        if ok:
            _fails.update(count=0, until=0.0)
            return
        _fails["count"] += 1
        extra = _fails["count"] - FREE_TRIES
        if extra >= 0:
            _fails["until"] = _now() + min(MAX_WAIT_S, 2.0 ** extra)


def _sign_in() -> None:
    expected = os.environ.get("APP_PASSWORD", "")
    st.title("AceLoRA")
    st.info("This dashboard is password protected (APP_PASSWORD).")
    with st.form("gate_form"):
        typed = st.text_input("Password", type="password", key="gate_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if (left := wait_left()) > 0:  # checked before the password: waiting is the only way on
            st.error(f"Too many wrong passwords: try again in {left:.0f} s.")
            return
        # compare_digest: the time taken does not reveal how much of the password was right
        ok = hmac.compare_digest(typed.encode("utf-8"), expected.encode("utf-8"))
        _record(ok)
        if ok:
            st.session_state[_OK] = _digest(expected)
            st.rerun()
        st.error("Wrong password.")


def require_password() -> None:
    """Return if the session may see the app; otherwise show only the sign-in page and stop."""
    if unlocked():
        return
    st.navigation([st.Page(_sign_in, title="Sign in", url_path="sign-in")], position="hidden").run()
    st.stop()
