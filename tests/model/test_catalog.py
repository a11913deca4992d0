"""state.model.catalog: every entry says whether its id is confirmed and how it is fetched; the
training default is the native 2B base; the picker flags unconfirmed ids."""
from __future__ import annotations

from state.model import catalog as cat
from state.train.config import TrainConfig


def test_the_default_is_the_native_2b_base_fetched_from_the_release_repos():
    base = cat.KNOWN_MODELS[cat.DEFAULT_MODEL_ID]
    assert TrainConfig().model_id == cat.DEFAULT_MODEL_ID == "ACE-Step/acestep-v15-base"
    assert (base.name, base.variant, base.size, base.source, base.confirmed) == \
        ("ACE-Step 1.5 base (2B)", "base", "2B", "original", True)
    dit, shared = base.parts
    assert dit.repo_id == "ACE-Step/acestep-v15-base" and dit.subdir == "acestep-v15-base"
    assert shared.repo_id == "ACE-Step/Ace-Step1.5" and shared.allow_patterns == ("vae/*", "Qwen3-Embedding-0.6B/*")
    sft = cat.KNOWN_MODELS["ACE-Step/acestep-v15-sft"]
    assert sft.source == "original" and sft.parts[1] == shared and sft.parts[0].subdir == "acestep-v15-sft"
    assert cat.known_ids()[0] == cat.DEFAULT_MODEL_ID


def test_every_entry_says_if_it_is_confirmed_and_how_it_is_fetched():
    for model_id, info in cat.KNOWN_MODELS.items():
        assert info.source in cat.SOURCES and info.name, model_id
        if info.source == "diffusers":
            assert info.parts == (cat.Part(model_id, cat.DIFFUSERS_PATTERNS),), model_id
    unconfirmed = [m for m, i in cat.KNOWN_MODELS.items() if not i.confirmed]
    assert unconfirmed == ["Runware/acestep-v15-base-diffusers"] and cat.known_ids()[-1] == unconfirmed[0]
    for direct in ("ACE-Step/acestep-v15-xl-base-diffusers", "ACE-Step/acestep-v15-xl-sft-diffusers",
                   "ACE-Step/acestep-v15-xl-turbo-diffusers", "Runware/acestep-v15-turbo-diffusers"):
        assert cat.KNOWN_MODELS[direct].source == "diffusers" and cat.KNOWN_MODELS[direct].confirmed


def test_picker_labels_flag_unconfirmed_ids_and_unknown_ids_fetch_whole_repos():
    assert "(unconfirmed id)" in cat.label("Runware/acestep-v15-base-diffusers")
    assert cat.label(cat.DEFAULT_MODEL_ID).startswith("ACE-Step 1.5 base (2B) · ACE-Step/acestep-v15-base — ")
    assert "unconfirmed" not in cat.label(cat.DEFAULT_MODEL_ID)
    assert cat.label("/some/local/folder") == "/some/local/folder"
    assert cat.parts_for("someone/else") == (cat.Part("someone/else"),)
