"""Training previews on disk: `samples/step-NNNNNN.wav` with a `step-NNNNNN.json` beside them.

The training job renders them from the live transformer (trainer/listen/previews.py) and
announces each with a `sample` event; this module only finds what has arrived.
"""
from __future__ import annotations

import re
from pathlib import Path

from state.listen.ab import samples_dir

_STEP_WAV = re.compile(r"^step-(\d{6,})\.wav$")


def step_samples(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, wav) for the training previews `samples/step-NNNNNN.wav`, by step."""
    d = samples_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_WAV.match(p.name))]
    return sorted(found)
