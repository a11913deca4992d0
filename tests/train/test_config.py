"""state.train.config: defaults, refusals that name the field, derived numbers; a bad config fails before loading."""
from __future__ import annotations

import json

import pytest

from state.train.config import ConfigError, TrainConfig, make_plan, parse_overrides


def test_defaults_match_the_recipe():
    c = TrainConfig()
    assert (c.rank, c.alpha, c.dropout) == (64, 64.0, 0.1)
    assert c.optimizer == "adamw_8bit" and c.learning_rate == 1e-4 and c.warmup_ratio == 0.03
    assert c.scheduler == "constant_with_warmup" and c.max_grad_norm == 1.0 and c.shift == 3.0
    assert c.target_modules == ["to_q", "to_k", "to_v", "to_out.0"] and c.target_blocks == ["self_attn", "cross_attn"]
    assert c.timestep_sampling == "logit_normal_max2" and c.cond_dropout is None  # None: 0.15, or 0 on turbo
    assert (c.clip_seconds, c.max_seconds, c.epochs, c.max_steps) == (0.0, 240.0, 0, 0)  # whole tracks, the recipe
    assert TrainConfig.from_dict(c.to_dict()) == c and len(c.hash()) == 16


def test_plan_derives_warmup_by_ceiling():
    c = TrainConfig(max_steps=0, epochs=3, batch_size=2, grad_accum=2)
    p = make_plan(c, 10)  # 5 batches per epoch, 2 per step -> 3 steps per epoch
    assert (p.steps_per_epoch, p.total_steps, p.warmup_steps, p.source) == (3, 9, 1, "epochs")  # ceil(0.27) = 1
    assert make_plan(TrainConfig(max_steps=1000), 3).warmup_steps == 30
    assert make_plan(TrainConfig(max_steps=101), 3).warmup_steps == 4  # ceil(3.03)


@pytest.mark.parametrize("change, field", [
    ({"rank": 0}, "rank"), ({"rank": True}, "rank"), ({"alpha": -1}, "alpha"), ({"dropout": 1.5}, "dropout"),
    ({"optimizer": "sgd"}, "optimizer"), ({"learning_rate": 5.0}, "learning_rate"),
    ({"target_modules": ["to_q", "fc1"]}, "target_modules"), ({"target_modules": []}, "target_modules"),
    ({"timestep_sampling": "uniform"}, "timestep_sampling"), ({"cond_dropout": -0.1}, "cond_dropout"),
    ({"clip_seconds": 0.5}, "clip_seconds"), ({"keep_last": 0}, "keep_last"), ({"device": "tpu"}, "device"),
    ({"batch_size": "2"}, "batch_size"), ({"warmup_ratio": float("nan")}, "warmup_ratio"),
    ({"model_id": "org/x hf_abcdefghijklmnopqrstuvwx"}, "model_id"),
])
def test_bad_values_are_refused_naming_the_field(change, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_dict({**TrainConfig().to_dict(), **change})


def test_unknown_keys_are_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="'lerning_rate'.*'learning_rate'"):
        TrainConfig.from_dict({"lerning_rate": 1e-4})
    with pytest.raises(ConfigError, match="hf_token"):
        TrainConfig.from_dict({"hf_token": "hf_x"})  # tokens have no field: never stored
    assert TrainConfig.from_dict({"cond_dropout": 0}).cond_dropout == 0  # 0 is allowed


def test_bad_config_fails_the_job_before_anything_loads(workspace):
    from train_kit import Kit, read_events

    job = workspace / "lora_output" / "bad"
    job.mkdir(parents=True)
    (job / "config.json").write_text(json.dumps({"rank": -3}))
    assert Kit(workspace, workspace, workspace).run(job) == 1
    evs = read_events(job)
    assert [e["type"] for e in evs] == ["error", "end"]  # no load phase: nothing was loaded
    assert "rank" in evs[0]["message"] and evs[0]["hint"] and evs[1]["status"] == "failed"


def test_any_annotation_is_checked_strictly():
    """A field added with any annotation (`int | None` used to raise KeyError) gets the same strict checks."""
    import dataclasses

    @dataclasses.dataclass
    class Probe(TrainConfig):
        every: int | None = None
        names: list[str] = dataclasses.field(default_factory=list)

    assert Probe.from_dict({"every": 3}).every == 3 and Probe.from_dict({"every": None}).every is None
    for bad, field in [({"every": 2.5}, "every"), ({"every": "3"}, "every"), ({"names": [1]}, "names.0"),
                       ({"rank": 0}, "rank")]:
        with pytest.raises(ConfigError, match=f"^{field}"):
            Probe.from_dict(bad)
    assert TrainConfig.from_dict({"alpha": 8}).alpha == 8.0 and TrainConfig.from_dict({"alpha": 8}).to_dict()["alpha"] == 8.0


def test_set_overrides_read_json_else_strings():
    assert parse_overrides(["rank=32", "learning_rate=1e-4", "compile=true", "cond_dropout=null",
                            "device=cuda:1", 'target_modules=["to_q","to_v"]', "model_id=org/a=b", "rank=16"]) == {
        "rank": 16, "learning_rate": 1e-4, "compile": True, "cond_dropout": None, "device": "cuda:1",
        "target_modules": ["to_q", "to_v"], "model_id": "org/a=b"}
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        parse_overrides(["rank"])


def test_a_token_is_never_echoed_in_the_message():
    token = "hf_" + "a" * 30
    with pytest.raises(ConfigError) as exc:
        TrainConfig.from_dict({"device": f"cuda {token}"})
    assert "device" in str(exc.value) and token not in str(exc.value)
