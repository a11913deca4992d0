import pytest

from state.dataset import labels as L


@pytest.mark.parametrize("raw,want", [
    ("Am", "A minor"), ("C Major", "C major"), ("f#m", "F# minor"), ("Bb", "Bb major"),
    ("E flat minor", "Eb minor"), ("A minor", "A minor"), ("CM", "C major"), ("G♯ min", "G# minor"),
])
def test_keyscale_normalised(raw, want):
    assert L.norm_keyscale(raw) == (want, None)


@pytest.mark.parametrize("raw", ["H", "C dorian", "", 5, ["A minor"]])
def test_keyscale_rejected_with_reason(raw):
    value, problem = L.norm_keyscale(raw)
    assert value is None and "keyscale" in problem


@pytest.mark.parametrize("raw,want", [("4/4", "4"), ("6/8", "6"), ("3", "3"), (4, "4"), ("2/2", "2")])
def test_timesignature(raw, want):
    assert L.norm_timesignature(raw) == (want, None)


def test_timesignature_unsupported():
    value, problem = L.norm_timesignature("5/4")
    assert value is None and "2, 3, 4, 6" in problem


@pytest.mark.parametrize("raw,want", [(120, 120), ("128", 128), ("99.6", 100), ("120 bpm", 120), (30, 30), (300, 300)])
def test_bpm(raw, want):
    assert L.norm_bpm(raw) == (want, None)


@pytest.mark.parametrize("raw,fragment", [("fast", "not a number"), (900, "outside 30–300"), (29, "outside"),
                                          (True, "not a number"), (None, "not a number")])
def test_bpm_bad(raw, fragment):
    value, problem = L.norm_bpm(raw)
    assert value is None and fragment in problem


def test_duration_forms_and_range():
    assert L.norm_duration("3:25") == (205.0, None)
    assert L.norm_duration(10) == (10.0, None)
    assert L.norm_duration(601)[0] is None
    assert "seconds" in L.norm_duration("long")[1]


@pytest.mark.parametrize("raw,want", [("en", "en"), ("English", "en"), ("ZH", "zh"), ("en_US", "en"),
                                      ("unknown", "unknown"), ("instrumental", "unknown")])
def test_language(raw, want):
    assert L.norm_language(raw) == (want, None)


def test_language_unknown_code():
    assert L.norm_language("klingon")[0] is None


def test_normalise_labels_collects_every_problem_and_keeps_good_values():
    clean, problems = L.normalise_labels({"caption": ["a", "b"], "bpm": "fast", "keyscale": "Am",
                                          "timesignature": "4/4", "lyrics": "  [Verse] hi ", "extra": 1})
    assert clean == {"keyscale": "A minor", "timesignature": "4", "lyrics": "[Verse] hi"}
    assert len(problems) == 2
    assert any("caption should be text, but it is a list" in p for p in problems)


def test_empty_values_are_absent_not_errors():
    assert L.normalise_labels({"caption": "", "bpm": None, "duration": "  "}) == ({}, [])


def test_nan_is_a_wrong_value_not_an_empty_one():
    clean, problems = L.normalise_labels({"bpm": float("nan"), "duration": float("nan")})
    assert clean == {} and len(problems) == 2 and "bpm nan is not a number" in problems[0]
