"""Votes on A/B comparisons: `samples/votes.jsonl`, one JSON line per vote, appended under a lock.

Votes survive a browser reload and a dashboard restart; a later vote on the same comparison
supersedes the earlier one, and the run's summary counts each comparison's latest vote.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from state import paths
from state.fsutil import locked
from state.listen.ab import BASE_KEY, ABError, read_meta, samples_dir

VOTES_FILE = "votes.jsonl"
NO_PREFERENCE = "none"


def votes_path(run_dir: Path) -> Path:
    return samples_dir(run_dir) / VOTES_FILE


def record_vote(run_dir: Path, comparison: str, choice: str, blind: bool = True) -> dict:
    """Append one vote (a letter of the comparison's blind mapping, or "none") to samples/votes.jsonl.

    One write of one line under an exclusive lock, so votes from two tabs never interleave, and a
    crash leaves whole lines only. A later vote on the same comparison supersedes the earlier one.
    """
    comp_dir = samples_dir(run_dir) / paths.check_name(comparison, "comparison")
    meta = read_meta(comp_dir)
    if meta is None:
        raise ABError(f"Comparison {comparison} has no results yet; vote once its audio is generated.")
    mapping = meta.get("blind", {})
    if choice != NO_PREFERENCE and choice not in mapping:
        raise ABError(f"Vote {choice!r} is not one of {sorted(mapping)} or {NO_PREFERENCE!r}.")
    key = mapping.get(choice)
    vote = {"t": round(time.time(), 3), "comparison": comparison, "choice": choice, "key": key,
            "preferred": None if key is None else ("base" if key == BASE_KEY else "adapter"),
            "blind": bool(blind), "includes_base": any(o["key"] == BASE_KEY for o in meta.get("outputs", []))}
    path = votes_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(vote, ensure_ascii=False) + "\n").encode("utf-8")
    with locked(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    return vote


def read_votes(run_dir: Path) -> list[dict]:
    out = []
    try:
        with open(votes_path(run_dir), encoding="utf-8") as f:
            for line in f:
                try:
                    v = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line from a crash elsewhere; the others still count
                if isinstance(v, dict) and "comparison" in v:
                    out.append(v)
    except FileNotFoundError:
        pass
    return out


def latest_votes(run_dir: Path) -> dict[str, dict]:
    """comparison id -> its most recent vote."""
    return {v["comparison"]: v for v in read_votes(run_dir)}


def summary(run_dir: Path) -> dict:
    """Per-run tally over each comparison's latest vote, plus one sentence ("adapter preferred 7 of 10")."""
    latest = list(latest_votes(run_dir).values())
    with_base = [v for v in latest if v.get("includes_base")]
    adapter = sum(v.get("preferred") == "adapter" for v in with_base)
    base = sum(v.get("preferred") == "base" for v in with_base)
    none = sum(v.get("choice") == NO_PREFERENCE for v in with_base)
    by_key: dict[str, int] = {}
    for v in latest:
        if v.get("key"):
            by_key[v["key"]] = by_key.get(v["key"], 0) + 1
    n = len(with_base)
    sentence = (f"adapter preferred {adapter} of {n} (base {base}, no preference {none})" if n
                else "no base-vs-adapter votes yet")
    return {"votes": len(latest), "base_comparisons": n, "adapter": adapter, "base": base, "none": none,
            "by_output": by_key, "blind_votes": sum(bool(v.get("blind")) for v in latest), "sentence": sentence}
