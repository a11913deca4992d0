"""The model card (trainer/train/card.py): one function for final/README.md and the published card; what
the Hub reads from it parses back with ModelCard.load; the exported card carries the run's last preview."""
from __future__ import annotations

from huggingface_hub import ModelCard

from train_kit import end_of

META = {"base_model_id": "ACE-Step/acestep-v15-base", "variant": "base", "shift": 3.0, "recommended_steps": 50,
        "recommended_guidance": 7.0, "rank": 64, "alpha": 64.0, "dropout": 0.1, "target_modules": ["to_q"],
        "target_blocks": ["self_attn"], "steps": 2000, "dataset_size": 5, "learning_rate": 1e-4,
        "timestep_sampling": "logit_normal_max2", "cond_dropout": None, "demo_model": False}


def test_published_card_names_its_base_model_as_an_adapter(tmp_path):
    from trainer.train.card import model_card

    card = model_card(META, {"batch_size": 2, "grad_accum": 4}, repo_id="alice/lofi", run_id="run-1",
                      samples=["step-000100.wav", "step-002000.wav"], prompt="lofi hip hop, dusty drums",
                      sample_url="https://hub.example/alice/lofi/resolve/main/samples", has_curve=True)
    card.save(tmp_path / "README.md")
    back = ModelCard.load(tmp_path / "README.md")
    d = back.data
    assert d.base_model == "ACE-Step/acestep-v15-base" and d.base_model_relation == "adapter"
    assert d.library_name == "diffusers" and d.pipeline_tag == "text-to-audio"
    assert {"ace-step", "ace-step-1.5", "lora", "music"} <= set(d.tags)
    assert d.widget == [{"text": "lofi hip hop, dusty drums", "output": {"url": "samples/step-002000.wav"}}]
    assert '<audio controls src="https://hub.example/alice/lofi/resolve/main/samples/step-002000.wav">' in back.text
    assert 'pipe.load_lora_weights("alice/lofi"' in back.text and "hf download alice/lofi" in back.text
    assert "| batch size × accumulation | 2 × 4 |" in back.text and "![loss curve](loss_curve.png)" in back.text


def test_local_and_demo_bases_are_not_named_as_hub_models():
    from trainer.train.card import model_card

    d = model_card({**META, "base_model_id": "/models/tiny", "demo_model": True}).data
    assert d.base_model is None and "base_model_relation" not in d.to_dict() and "widget" not in d.to_dict()
    assert model_card({**META, "base_model_id": "/models/tiny", "demo_model": True}).text.count("Demo adapter") == 1


def test_exported_card_carries_the_last_preview(train_kit):
    job = train_kit.run_dir("card", max_steps=2, sample_every=2, sample_seconds=1.0, sample_steps=2)
    assert train_kit.run(job) == 0 and end_of(job)["status"] == "completed"
    final = job / "final"
    card = ModelCard.load(final / "README.md")
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "text-to-audio"
    assert card.data.widget[0]["output"]["url"] == "samples/step-000002.wav"
    assert (final / "samples" / "step-000002.wav").read_bytes() == (job / "samples" / "step-000002.wav").read_bytes()
    assert '<audio controls src="samples/step-000002.wav">' in card.text
    assert 'pipe.load_lora_weights("path/to/final"' in card.text
