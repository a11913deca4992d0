"""Which fields an auto-label run may write: the user-edit policy, shared by the page and the job.

Write policy (what "never overwrite the user's labels" means, precisely):
  * A track is *protected* when its sidecar says `labeled_by: user` (the editor, CSV import), or
    has no `labeled_by` but already holds label values (a sidecar that came with the audio).
  * With `protect_user` on, a protected track keeps every field that has a value; only fields
    that are empty in the sidecar (missing, null or blank) are filled. Its `labeled_by` is left
    as it was, so the protection holds for every later run too.
  * Tracks last labelled by a machine (`dsp` or `lm`) get all proposed fields replaced, and
    `labeled_by` names this run's source ("lm" if any LM value was written, else "dsp").
  * With `protect_user` off, every proposed field is written and `labeled_by` names the source.
  * `only_unlabelled` picks only tracks whose sidecar holds no label field at all.
"""
from __future__ import annotations

from state.dataset.labels import LABEL_FIELDS

AUTO_SOURCES = ("dsp", "lm")


def _empty(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def has_labels(sidecar: dict | None) -> bool:
    return any(not _empty((sidecar or {}).get(k)) for k in LABEL_FIELDS)


def is_protected(sidecar: dict | None) -> bool:
    by = (sidecar or {}).get("labeled_by")
    return by == "user" or (by not in AUTO_SOURCES and has_labels(sidecar))


def plan_edits(sidecar: dict | None, proposed: dict, sources: dict, protect_user: bool) -> tuple[dict, str | None]:
    """(fields to write, labeled_by to record) for one track; see the module docstring.

    `proposed` holds clean label values; `sources` maps each proposed field to "dsp" or "lm".
    labeled_by None means "leave it as it is" (a protected track stays protected).
    """
    data = sidecar or {}
    protected = protect_user and is_protected(data)
    edits = {k: v for k, v in proposed.items()
             if k in LABEL_FIELDS and not _empty(v) and (not protected or _empty(data.get(k)))
             and v != data.get(k)}
    if not edits:
        return {}, None
    if protected:
        return edits, None
    return edits, "lm" if any(sources.get(k) == "lm" for k in edits) else "dsp"
