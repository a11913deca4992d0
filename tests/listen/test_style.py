"""Style distance (issue 13 §3): the metric, the `style-distance` job on a tiny run, reading it back
without torch, the Runs page chart and button, and the hand-over to the A/B page."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from state import events, jobs
from state.fsutil import write_json
from state.listen import style

from locations import APP, REPO
from train_kit import read_events


def latent_style(seed: int, frames: int = 3000, dim: int = 8, draw: int = 0) -> np.ndarray:
    """Frames of a synthetic style: a fixed mean and mixing matrix per style seed, fresh noise per draw."""
    g = np.random.default_rng(seed)
    mean, mix = g.normal(size=dim), g.normal(size=(dim, dim)) / np.sqrt(dim)
    return mean + np.random.default_rng(1000 + 10 * seed + draw).normal(size=(frames, dim)) @ mix.T


# ---- the metric --------------------------------------------------------------------------------

def test_the_distances_separate_two_latent_styles_and_vanish_for_a_set_against_itself():
    from trainer.listen import distance

    a, a2, b = latent_style(1), latent_style(1, draw=1), latent_style(2)
    assert distance.frechet(a, a) == pytest.approx(0.0, abs=1e-8)
    same, other = distance.frechet(a2, a), distance.frechet(b, a)
    assert same < 0.05 and other > 50 * same
    sigma = distance.bandwidth(a)
    assert abs(distance.mmd(a, a, sigma)) < 1e-3
    assert distance.mmd(b, a, sigma) > 20 * abs(distance.mmd(a2, a, sigma))
    # a shift of the mean alone is seen, and a larger shift is further
    assert 0 < distance.frechet(a + 0.5, a) < distance.frechet(a + 1.0, a)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        distance.frechet(a[:, 0], a)


def test_a_request_names_the_field_that_is_wrong():
    with pytest.raises(style.StyleError, match="Unknown style-distance field 'clips'"):
        style.StyleRequest.from_dict({"clips": 3})
    with pytest.raises(style.StyleError, match="clips_per_prompt must be a whole number"):
        style.StyleRequest.from_dict({"clips_per_prompt": 0})
    with pytest.raises(style.StyleError, match="over 512 generations"):
        style.StyleRequest.from_dict({"prompts": 64, "clips_per_prompt": 64})
    assert style.StyleRequest.from_dict({}).clips_per_prompt == 4


# ---- the job on a tiny run ---------------------------------------------------------------------

def test_the_job_measures_the_base_and_each_adapter_and_the_result_reads_back_without_torch(train_kit):
    from ab_kit import run_job

    run = train_kit.run_dir("styled", max_steps=4, checkpoint_every=2, val_every=2, learning_rate=5e-2)
    assert train_kit.run(run) == 0
    folder = run / "samples" / "style-test"
    folder.mkdir(parents=True)
    sources = [str(run / "checkpoints" / "step-000002"), str(run / "final")]
    write_json(folder / "params.json", {"sources": sources, "prompts": 2, "clips_per_prompt": 2, "seconds": 2.0,
                                        "steps": 4, "device": "cpu"})
    assert run_job("style-distance", folder) == 0, read_events(folder, "error")

    result = json.loads((folder / style.RESULT_FILE).read_text())
    got = {s["key"]: s for s in result["sources"]}
    assert list(got) == ["base", "step-000002", "final"]
    assert [got[k]["step"] for k in got] == [0, 2, 4] and got["base"]["ratio"] == 1.0
    assert all(s["clips"] == 4 and s["frechet"] >= 0 and np.isfinite(s["mmd"]) for s in got.values())
    assert got["final"]["frechet"] != got["base"]["frechet"]  # the adapter was on while its clips were made
    # the reference is the run's three cached tracks (2-3 s at 25 frames/s), in the model's 8 latent channels
    assert result["reference"] == {"tracks": 3, "frames": 50 + 62 + 75, "dim": 8}
    assert [e["key"] for e in read_events(folder, "style_distance")] == ["base", "step-000002", "final"]
    assert read_events(folder, "end")[-1]["status"] == "completed"

    probe = f"""
import sys
from pathlib import Path
from state.listen import style
folder, r = style.latest_result(Path({str(run)!r}))
pts = style.by_step(r)
print(folder.name, [(p["key"], p["step"]) for p in pts], style.closest(r)["key"] in ("step-000002", "final"),
      [v["step"] for v in style.validation_curve(Path({str(run)!r}))], "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[0] == ("style-test [('base', 0), ('step-000002', 2), ('final', 4)] True "
                                         "[0, 2, 4] False"), out.stderr[-2000:]


# ---- the pages -----------------------------------------------------------------------------------

def measured(run_dir, frechet=(8.0, 3.0, 2.0)) -> None:
    """A finished measurement and validation events on the A/B kit's run (checkpoints 10, 20; final = 20)."""
    folder = run_dir / "samples" / "style-20260101-000000"
    folder.mkdir(parents=True)
    keys = [("base", None, 0), ("step-000010", run_dir / "checkpoints" / "step-000010", 10),
            ("step-000020", run_dir / "checkpoints" / "step-000020", 20)]
    write_json(folder / style.RESULT_FILE, {
        "run_id": run_dir.name, "reference": {"tracks": 1, "frames": 50, "dim": 8}, "sources": [
            {"key": k, "label": k, "source": str(p) if p else None, "step": s, "clips": 4, "frechet": f,
             "mmd": f / 100, "ratio": f / frechet[0]} for (k, p, s), f in zip(keys, frechet)]})
    for step, loss in ((0, 2.0), (10, 1.5), (20, 1.7)):
        events.append_event(run_dir, "validation", step=step, loss=loss, best=step in (0, 10))
    write_json(run_dir / "checkpoints" / "best.json", {"step": 10, "loss": 1.5})


def runs_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/runs.py")
    return at.run()


def test_runs_page_plots_the_distance_by_checkpoint_beside_validation_and_hands_the_closest_to_ab(ab_run):
    measured(ab_run)
    at = runs_page()
    assert not at.exception
    fig = json.loads(at.get("plotly_chart")[-1].proto.spec)
    names = [t.get("name") for t in fig["data"]]
    assert "style distance (base)" in names and "validation loss" in names
    assert "closest: step-000020" in names and "best validation: step 10" in names
    caption = " ".join(c.value for c in at.caption)
    assert "Closest to the training data: step-000020 (step 20), at 0.25× the base model's" in caption

    at.button(key="runs_style_ab").click().run()
    assert not at.exception
    assert at.selectbox(key="ab_run").value == ab_run.name
    assert at.selectbox(key="ab_source").value.name == "step-000020"


def test_the_measure_button_starts_the_job_on_every_adapter(ab_run, monkeypatch):
    launched = []
    monkeypatch.setattr(jobs, "launch", lambda job_dir, kind, *a, **k: launched.append((job_dir, kind)))
    at = runs_page()
    assert not at.exception
    at.number_input(key="runs_style_clips").set_value(2)
    at.button(key="runs_style_start").click().run()
    assert not at.exception
    [(folder, kind)] = launched
    assert kind == style.KIND and folder.parent == ab_run / "samples" and folder.name.startswith(style.PREFIX)
    req = json.loads((folder / "params.json").read_text())
    assert [p.rsplit("/", 1)[-1] for p in req["sources"]] == ["final", "step-000020", "step-000010"]
    assert req["clips_per_prompt"] == 2 and req["device"] == "cpu"


def test_preflight_warns_when_a_run_is_planned_far_shorter_than_the_recipe():
    from state.train.config import recipe_steps
    from state.train.preflight import schedule_check

    short = schedule_check({"max_steps": 30}, 5, 30)
    assert short.level == "warning" and f"({recipe_steps(5)} steps)" in short.text
    assert schedule_check({}, 5, recipe_steps(5)) is None
    # a larger batch needs fewer optimizer steps, so the same plan is judged against a smaller recipe
    assert schedule_check({"batch_size": 4}, 20, recipe_steps(20, 4)) is None


def test_the_best_validation_step_is_marked_with_only_validation_points():
    from ui import style_view

    val = [{"step": s, "loss": 2.0 - s / 2000} for s in range(100, 2001, 100)]
    fig = style_view.figure(None, val, {"step": 1500})
    (line,) = fig.layout.shapes  # plotly's add_vline drew nothing here: the left axis had no points
    assert (line.x0, line.x1, line.yref, line.y0, line.y1) == (1500, 1500, "paper", 0, 1)
    assert fig.layout.legend.y < 0  # under the plot, clear of the title
