"""The adapter learns a style (issue 13 §3), shown with the real train and style-distance jobs on the
tiny model: bench/learns.py's construction at test size (3 s tracks, a short run, few clips)."""
from __future__ import annotations

import json

from state.fsutil import write_json
from state.listen import style

from ab_kit import run_job
from train_kit import read_events


def test_a_short_default_run_moves_the_generated_frames_halfway_to_the_data(workspace, tiny_model_dir):
    from bench.learns import write_dataset

    manifest = write_dataset(workspace, tiny_model_dir, tracks=5, max_seconds=240.0, seconds=3.0)
    run = workspace / "lora_output" / "learns"
    run.mkdir(parents=True)
    # the default recipe's settings, fewer steps; previews and gradient checkpointing off (CPU time only)
    write_json(run / "config.json", {"model_id": str(tiny_model_dir), "manifest": str(manifest), "device": "cpu",
                                     "max_steps": 150, "val_every": 75, "sample_every": 0,
                                     "gradient_checkpointing": False})
    assert run_job("train", run) == 0, read_events(run, "error")
    val = [e["loss"] for e in read_events(run, "validation")]
    assert len(val) == 3 and val[-1] < 0.8 * val[0]

    folder = run / "samples" / "style-learns"
    folder.mkdir(parents=True)
    write_json(folder / "params.json", {"sources": [str(run / "final")], "prompts": 2, "clips_per_prompt": 2,
                                        "seconds": 3.0, "steps": 10, "device": "cpu"})
    assert run_job("style-distance", folder) == 0, read_events(folder, "error")
    final = {s["key"]: s for s in json.loads((folder / style.RESULT_FILE).read_text())["sources"]}["final"]
    assert final["ratio"] <= 0.5, final
