"""state/listen/ab.py without torch: requests, blind mapping, votes on disk, the run summary, pictures."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from state.fsutil import write_json
from state.listen import ab, previews, votes
from ui import audio_pictures

from locations import REPO


def fake_comparison(run_dir, name, keys=("base", "final@1")):
    comp = ab.samples_dir(run_dir) / name
    comp.mkdir(parents=True)
    outputs = [{"key": k, "label": k, "file": f"{name}_{k}.wav"} for k in keys]
    write_json(comp / ab.META_FILE, {"outputs": outputs, "blind": ab.assign_blind(list(keys)), "request": {}})
    return comp


def test_request_validation_names_the_field(tmp_path):
    good = {"run_id": "r", "sources": ["/x/final"], "prompt": {"caption": "c", "duration": 5.0}}
    assert ab.ABRequest.from_dict(good).scales == [0.0, 1.0]
    for bad, msg in [({"prompt": {"caption": ""}}, "caption is empty"),
                     ({"prompt": {"caption": "c", "duration": 0.1}}, "duration"),
                     ({"prompt": {"caption": "c", "tempo": 1}}, "unknown field 'tempo'"),
                     ({"scales": []}, "scales"), ({"steps": 0}, "steps"),
                     ({"mode": "checkpoint-vs-checkpoint"}, "at least two"),
                     ({"colour": 1}, "Unknown A/B request field 'colour'")]:
        with pytest.raises(ab.ABError, match=msg):
            ab.ABRequest.from_dict({**good, **bad})
    assert ab.parse_scales("0, 1.0 0.5") == [0.0, 1.0, 0.5]
    with pytest.raises(ab.ABError, match="'x'"):
        ab.parse_scales("0, x")


def test_plan_outputs_puts_the_base_first_and_never_renders_scale_zero_twice():
    req = ab.ABRequest(sources=["/r/final"], prompt={"caption": "c"}, scales=[0, 1.0, 0.5, 1.0])
    assert [o["key"] for o in ab.plan_outputs(req)] == ["base", "final@1", "final@0.5"]
    ck = ab.ABRequest(mode="checkpoint-vs-checkpoint", sources=["/r/checkpoints/step-000010", "/r/checkpoints/step-000020"],
                      prompt={"caption": "c"}, scales=[1.0])
    assert [o["key"] for o in ab.plan_outputs(ck)] == ["step-000010@1", "step-000020@1"]


def test_blind_mapping_is_random_recorded_and_revealed(tmp_path):
    keys = ["base", "final@1", "final@2"]
    seen = {tuple(ab.assign_blind(keys).values()) for _ in range(60)}
    assert len(seen) > 1 and all(sorted(s) == sorted(keys) for s in seen)
    comp = fake_comparison(tmp_path, "ab-1", keys)
    meta = ab.read_meta(comp)
    revealed = ab.reveal(meta)
    assert sorted(revealed) == ["A", "B", "C"] and {revealed[k] for k in revealed} == set(keys)
    assert all(revealed[letter] == meta["blind"][letter] for letter in revealed)


def test_votes_are_appended_validated_and_summarised(tmp_path):
    comps = [fake_comparison(tmp_path, f"ab-{i}") for i in range(4)]
    adapter_letter = {c.name: next(k for k, v in ab.read_meta(c)["blind"].items() if v != "base") for c in comps}
    base_letter = {c.name: next(k for k, v in ab.read_meta(c)["blind"].items() if v == "base") for c in comps}
    votes.record_vote(tmp_path, "ab-0", base_letter["ab-0"])
    votes.record_vote(tmp_path, "ab-0", adapter_letter["ab-0"])  # changed their mind: the latest vote counts
    votes.record_vote(tmp_path, "ab-1", adapter_letter["ab-1"])
    votes.record_vote(tmp_path, "ab-2", base_letter["ab-2"])
    votes.record_vote(tmp_path, "ab-3", votes.NO_PREFERENCE)
    s = votes.summary(tmp_path)
    assert s["sentence"] == "adapter preferred 2 of 4 (base 1, no preference 1)"
    lines = (tmp_path / "samples" / "votes.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[1])["key"] == "final@1"
    with pytest.raises(ab.ABError, match="not one of"):
        votes.record_vote(tmp_path, "ab-0", "Z")
    (ab.samples_dir(tmp_path) / "ab-9").mkdir()
    with pytest.raises(ab.ABError, match="no results yet"):
        votes.record_vote(tmp_path, "ab-9", "A")


def test_concurrent_votes_never_tear_a_line(tmp_path):
    comp = fake_comparison(tmp_path, "ab-1")
    letter = next(iter(ab.read_meta(comp)["blind"]))
    threads = [threading.Thread(target=lambda: [votes.record_vote(tmp_path, "ab-1", letter) for _ in range(25)])
               for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    lines = (tmp_path / "samples" / "votes.jsonl").read_text().splitlines()
    assert len(lines) == 100 and all(json.loads(x)["choice"] == letter for x in lines)


def test_pictures_are_small_and_finite(tmp_path, tone):
    wav = tone(tmp_path / "t.wav", seconds=3.0, freq=1000.0)
    spec = audio_pictures.spectrogram(wav)
    assert spec["db"].shape[0] == 128 and spec["db"].shape[1] <= 300 and np.isfinite(spec["db"]).all()
    peak_band = spec["freqs"][spec["db"].mean(axis=1).argmax()]
    assert 800 < peak_band < 1250  # the tone's band is the loudest
    wf = audio_pictures.waveform(wav, points=500)
    assert len(wf["min"]) == 500 and wf["max"].max() == pytest.approx(0.5, abs=0.01)


def test_step_samples_are_listed_by_step(tmp_path):
    d = ab.samples_dir(tmp_path)
    d.mkdir(parents=True)
    for s in (40, 0, 120):
        (d / f"step-{s:06d}.wav").write_bytes(b"")
    (d / "ab-1_base.wav").write_bytes(b"")
    assert [s for s, _ in previews.step_samples(tmp_path)] == [0, 40, 120]


def test_the_dashboard_side_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; import state.listen.ab, state.train.config, ui.ab; "
            "bad = [m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_output_labels_are_words_a_listener_reads():
    req = ab.ABRequest.from_dict({"run_id": "r", "mode": ab.MODES[1], "sources": ["/x/final", "/x/checkpoints/step-000040"],
                                  "prompt": {"caption": "c"}, "scales": [0, 1.0, 0.5]})
    assert [o["label"] for o in ab.plan_outputs(req)] == [
        "Base model (adapter off)", "Final adapter", "Final adapter at strength 0.5",
        "Checkpoint at step 40", "Checkpoint at step 40 at strength 0.5"]
