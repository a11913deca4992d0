"""The label job (trainer/label/autolabel.py) end to end on a real dataset folder, plus its write policy."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from state.dataset import manifest
from state.events import EventWriter, read_all
from state.fsutil import write_json
from state.label import options, policy
from trainer.job import JobContext

from label_kit import A_MINOR, chord_loop, click_track, tiny_audio_tokenizer, write_tiny_lm
from locations import REPO

ANSWER = """<think>
bpm: 120
caption: Bright synth-pop with a four-on-the-floor kick and airy pads.
duration: 12
genres: synth-pop
keyscale: C major
language: en
timesignature: 4
</think>

# Lyric
[Verse]
Neon in the rain<|im_end|>"""


@pytest.fixture(scope="module")
def lm_models(tmp_path_factory, tiny_model_dir):
    """The tiny pipeline with an audio_tokenizer/ folder, and a tiny random 5 Hz LM (16 audio codes)."""
    root = tmp_path_factory.mktemp("label_models")
    model = root / "model"
    shutil.copytree(tiny_model_dir, model)
    tiny_audio_tokenizer().save_pretrained(str(model / "audio_tokenizer"))
    index = json.loads((model / "model_index.json").read_text())
    index["audio_tokenizer"] = ["ace_step", "AceStepAudioTokenizer"]
    (model / "model_index.json").write_text(json.dumps(index, indent=2))
    return model, write_tiny_lm(root / "lm")


def make_dataset(workspace: Path, name: str = "songs", corrupt: bool = False, short: bool = False,
                 tracks: tuple[str, ...] = ("click.wav", "minor.wav")) -> manifest.Dataset:
    """A folder dataset. `short` (3 s) keeps the LM tests fast: the tiny VAE encodes at the audio rate."""
    src = workspace / "music"
    src.mkdir()
    if "click.wav" in tracks:
        click_track(src / "click.wav", bpm=120.0, seconds=3.0 if short else 12.0)
    if "minor.wav" in tracks:
        chord_loop(src / "minor.wav", A_MINOR, seconds_per_chord=0.75 if short else 1.5, loops=1 if short else 2)
    if corrupt:
        (src / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 40)
    ds = manifest.create_dataset(name, src)
    manifest.scan(ds)
    return ds


def run_job(workspace: Path, **params) -> tuple[str, list[dict]]:
    from trainer.label.autolabel import job_label

    job_dir = workspace / "jobs" / "label-test"
    job_dir.mkdir(parents=True, exist_ok=True)
    with EventWriter(job_dir) as events:
        status = job_label(JobContext(job_dir, events, params), None)
    return status, read_all(job_dir / "events.jsonl")


def sidecar(ds: manifest.Dataset, name: str) -> dict:
    return json.loads((ds.source / name).with_suffix(".json").read_text())


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def test_random_lm_end_to_end_completes_and_says_nothing_usable(workspace, lm_models):
    model, lm = lm_models
    ds = make_dataset(workspace, short=True, tracks=("minor.wav",))
    status, events = run_job(workspace, dataset=ds.name, mode="both", model=str(model), lm_path=str(lm),
                             max_new_tokens=48)
    assert status == "completed"
    assert of_type(events, "model")[0]["codec_kind"] == "diffusers"
    assert [(e["done"], e["total"]) for e in of_type(events, "phase") if e["name"] == "label"] == [(0, 1), (1, 1)]
    warnings = [e["message"] for e in of_type(events, "warning")]
    assert len(warnings) == 1 and warnings[0].startswith("minor.wav: ") and "nothing usable" in warnings[0]
    assert "nothing usable for 1 track(s)" in of_type(events, "summary")[0]["message"]
    # the signal labels are still written, and nothing the random LM said is
    minor = sidecar(ds, "minor.wav")
    assert minor["keyscale"] == "A minor" and minor["labeled_by"] == "dsp"
    assert not {"caption", "lyrics", "vocal_language", "timesignature"} & set(minor)
    assert "duration" not in minor  # 3 s is outside ACE-Step's 10-600 s: dropped, with a note
    assert any("duration" in n for n in of_type(events, "labeled")[0]["notes"])
    rows = {r["id"]: r for r in manifest.read_manifest(ds)}
    assert rows["minor.wav"]["keyscale"] == "A minor" and rows["minor.wav"]["labeled_by"] == "dsp"


def test_lm_answer_written_and_user_edits_survive(workspace, lm_models, monkeypatch):
    """The LM's generate call answers a realistic text; everything around it is the real path."""
    import trainer.label.lm as label_lm

    model, lm = lm_models
    calls = []

    def answer(lm_, codes, max_new_tokens, temperature, top_p, seed, stop_at_think_end):
        calls.append((len(codes), stop_at_think_end))
        return ANSWER

    monkeypatch.setattr(label_lm, "understand", answer)
    ds = make_dataset(workspace, short=True)
    manifest.save_labels(ds, {"minor.wav": {"caption": "my own words", "bpm": 100}})  # the editor: labeled_by user
    manifest.save_labels(ds, {"click.wav": {"caption": "an older auto caption"}}, labeled_by="lm")
    status, events = run_job(workspace, dataset=ds.name, mode="lm", model=str(model), lm_path=str(lm))
    assert status == "completed" and calls == [(15, False), (15, False)]  # 3 s -> 15 codes, lyrics wanted

    mine = sidecar(ds, "minor.wav")
    assert mine["caption"] == "my own words" and mine["bpm"] == 100      # user values kept
    assert mine["keyscale"] == "C major" and mine["timesignature"] == "4"  # empty fields filled
    assert mine["vocal_language"] == "en" and mine["lyrics"] == "[Verse]\nNeon in the rain"
    assert mine["labeled_by"] == "user"                                    # still protected next time
    auto = sidecar(ds, "click.wav")
    assert auto["caption"].startswith("Bright synth-pop") and auto["labeled_by"] == "lm"
    assert "duration" not in auto  # the file's exact 3 s wins over the LM's "12", and is too short to keep
    labeled = {e["track"]: e for e in of_type(events, "labeled")}
    assert "caption" in labeled["minor.wav"]["kept"] and labeled["minor.wav"]["genres"] == "synth-pop"


def test_labels_only_stops_at_think_and_writes_no_lyrics(workspace, lm_models, monkeypatch):
    import trainer.label.lm as label_lm

    model, lm = lm_models
    seen = []
    monkeypatch.setattr(label_lm, "understand", lambda *a, stop_at_think_end, **k: seen.append(stop_at_think_end) or ANSWER)
    ds = make_dataset(workspace, short=True, tracks=("click.wav",))
    status, _ = run_job(workspace, dataset=ds.name, mode="lm", lyrics=False, model=str(model), lm_path=str(lm))
    assert status == "completed" and seen == [True]
    assert "lyrics" not in sidecar(ds, "click.wav") and sidecar(ds, "click.wav")["caption"]


def test_without_lm_signal_still_runs_and_lm_mode_says_why(workspace):
    ds = make_dataset(workspace)
    status, events = run_job(workspace, dataset=ds.name, mode="both", model="tests/not-a-model")
    assert status == "completed"
    assert "LM labels skipped" in of_type(events, "warning")[0]["message"]
    assert sidecar(ds, "minor.wav")["keyscale"] == "A minor"
    from trainer.label.autolabel import LMUnavailable
    with pytest.raises(LMUnavailable, match="5 Hz LM .* is not on this machine"):
        run_job(workspace, dataset=ds.name, mode="lm", model="tests/not-a-model")


def test_only_unlabelled_and_stop_between_tracks(workspace):
    ds = make_dataset(workspace)
    manifest.save_labels(ds, {"click.wav": {"caption": "done already"}})
    status, events = run_job(workspace, dataset=ds.name, mode="signal", only_unlabelled=True)
    assert of_type(events, "start")[0]["skipped"] == 1
    assert [e["track"] for e in of_type(events, "labeled")] == ["minor.wav"]
    assert sidecar(ds, "click.wav") == {"caption": "done already", "labeled_by": "user"}

    (workspace / "jobs" / "label-test" / "control").mkdir(parents=True, exist_ok=True)
    (workspace / "jobs" / "label-test" / "control" / "stop").write_text("now")
    status, events = run_job(workspace, dataset=ds.name, mode="signal")
    assert status == "stopped" and "Stopped before the end" in of_type(events, "summary")[-1]["message"]


def test_corrupt_file_warns_and_the_rest_are_labelled_via_run_py(workspace):
    ds = make_dataset(workspace, corrupt=True)
    job_dir = workspace / "jobs" / "label-cli"
    job_dir.mkdir(parents=True)
    write_json(job_dir / "params.json", {"dataset": ds.name, "mode": "signal"})
    proc = subprocess.run([sys.executable, str(REPO / "trainer" / "run.py"), "label", "--job-dir", str(job_dir)],
                          cwd=workspace, env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = read_all(job_dir / "events.jsonl")
    warnings = [e["message"] for e in of_type(events, "warning")]
    assert len(warnings) == 1 and warnings[0].startswith("broken.wav: not labelled")
    assert sorted(e["track"] for e in of_type(events, "labeled")) == ["click.wav", "minor.wav"]
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed"
    assert not (ds.source / "broken.json").exists()
    assert sidecar(ds, "minor.wav")["labeled_by"] == "dsp"
    # the job compiled librosa's numba code under the cache folder's lock before measuring anything
    assert (Path(os.environ["NUMBA_CACHE_DIR"]) / "compile.lock").is_file()


# ---- write policy (state/label/policy.py) ----

def test_plan_edits_policy():
    proposed = {"caption": "auto", "bpm": 120, "keyscale": "A minor"}
    sources = {"caption": "lm", "bpm": "dsp", "keyscale": "dsp"}
    user = {"caption": "mine", "bpm": None, "labeled_by": "user"}
    assert policy.plan_edits(user, proposed, sources, True) == ({"bpm": 120, "keyscale": "A minor"}, None)
    assert policy.plan_edits(user, proposed, sources, False) == (proposed, "lm")
    came_with_audio = {"caption": "seed caption"}  # no labeled_by, but labels: treated as the user's
    assert policy.plan_edits(came_with_audio, proposed, sources, True)[0] == {"bpm": 120, "keyscale": "A minor"}
    machine = {"caption": "old", "bpm": 90, "labeled_by": "dsp"}
    assert policy.plan_edits(machine, proposed, sources, True) == (proposed, "lm")
    assert policy.plan_edits(None, {"bpm": 120}, {"bpm": "dsp"}, True) == ({"bpm": 120}, "dsp")
    assert policy.plan_edits({"bpm": 120, "labeled_by": "dsp"}, {"bpm": 120}, {"bpm": "dsp"}, True) == ({}, None)


def test_params_check_themselves():
    assert options.LabelParams.from_dict({"dataset": "x"}).mode == "both"
    with pytest.raises(ValueError, match="Unknown label option"):
        options.LabelParams.from_dict({"dataset": "x", "overwrite": True})
    with pytest.raises(ValueError, match="mode"):
        options.LabelParams.from_dict({"dataset": "x", "mode": "guess"})


def test_a_users_tempo_is_kept_and_the_measured_one_proposed(workspace):
    from state.label import suggestions

    ds = make_dataset(workspace, tracks=("click.wav",))
    manifest.save_labels(ds, {"click.wav": {"bpm": 60}})  # the user counts it in half time
    status, events = run_job(workspace, dataset=ds.name, mode="signal")
    assert status == "completed" and sidecar(ds, "click.wav")["bpm"] == 60
    (labeled,) = of_type(events, "labeled")
    assert labeled["suggested"]["bpm"] == 120 and labeled["confidence"]["bpm"] > 0.5
    (row, s), = [(r, s) for r, s in suggestions.pending(ds.dir, manifest.read_manifest(ds)) if s.field == "bpm"]
    assert s.value == 120 and "your value 60 was kept" in s.reason
    assert "suggestions to review" in of_type(events, "summary")[0]["message"]
