"""Preview samples during training: rendered by separate `sample` jobs, reported as `sample` events."""
from __future__ import annotations

from pathlib import Path

import soundfile as sf

from state import jobs
from state.events import read_all
from trainer.listen.previews import Sampler

from train_kit import end_of, read_events


def test_a_run_with_sampling_on_gets_baseline_and_periodic_samples(train_kit):
    job = train_kit.run_dir("sampled", max_steps=4, sample_every=4, sample_seconds=1.0, sample_steps=2,
                            sample_prompt={"caption": "a test tone"})
    assert train_kit.run(job) == 0, read_events(job)[-3:]
    evs = read_all(job / "events.jsonl")
    samples = [e for e in evs if e["type"] == "sample"]
    assert [e["step"] for e in samples] == [0, 4]
    # every preview is reported before the run's end, so the run reads as completed, not "died"
    assert evs[-1]["type"] == "end" and end_of(job)["status"] == "completed"
    assert jobs.status(job).status == "completed"
    for e in samples:
        wav = Path(e["path"])
        assert wav.name == f"step-{e['step']:06d}.wav" and wav.parent == job / "samples"
        info = sf.info(str(wav))
        assert info.samplerate == 48000 and info.channels == 2 and info.frames == 48000
    # the sample jobs ran in their own processes, one after the other; their adapter snapshots are gone
    for step in (0, 4):
        sj = job / "samples" / "jobs" / f"step-{step:06d}"
        assert jobs.status(sj).status == "completed" and not (sj / "adapter_model.safetensors").exists()
        assert jobs.job_info(sj)["pid"] != jobs.job_info(job)["pid"]
    assert (job / "samples" / "jobs" / "step-000004" / "meta.json").is_file()  # the snapshot's config


class _Ctx:
    def __init__(self, job_dir):
        self.job_dir = job_dir

    def take_flag(self, flag):
        return jobs.flag_set(self.job_dir, flag) and (jobs.clear_flag(self.job_dir, flag) or True)


def test_sample_now_is_honoured_even_with_periodic_sampling_off(tmp_path, monkeypatch):
    from state.train.config import TrainConfig

    launched = []
    monkeypatch.setattr(Sampler, "launch", lambda self, step: launched.append(step))
    s = Sampler(_Ctx(tmp_path), TrainConfig(sample_every=0), transformer=None)
    s.maybe(3)
    jobs.request(tmp_path, "sample_now")
    s.maybe(4)
    s.maybe(5)
    assert launched == [4]
    s = Sampler(_Ctx(tmp_path), TrainConfig(sample_every=5), transformer=None)
    for step in range(11):
        s.maybe(step)
    assert launched == [4, 0, 5, 10]
