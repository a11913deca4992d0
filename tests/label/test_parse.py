"""The LM answer parser (trainer/label/parse.py) on realistic and on malformed answers."""
from __future__ import annotations

from trainer.label.parse import parse_answer

REALISTIC = """<think>
bpm: 92
caption: A melancholic indie folk ballad with fingerpicked acoustic guitar, soft male vocals and a
  warm cello line that swells in the chorus.
duration: 184
genres: indie folk, acoustic
keyscale: D minor
language: en
timesignature: 4
</think>

# Lyric
[Verse 1]
Walking down the river road
[Chorus]
Hold on, hold on<|im_end|>"""


def test_realistic_answer():
    a = parse_answer(REALISTIC)
    assert a.labels == {
        "bpm": 92,
        "caption": "A melancholic indie folk ballad with fingerpicked acoustic guitar, soft male vocals and a "
                   "warm cello line that swells in the chorus.",
        "duration": 184.0, "keyscale": "D minor", "vocal_language": "en", "timesignature": "4",
        "lyrics": "[Verse 1]\nWalking down the river road\n[Chorus]\nHold on, hold on",
    }
    assert a.genres == "indie folk, acoustic"
    assert a.usable and a.notes == []


def test_language_is_read_from_language_not_reported_unknown():
    a = parse_answer("<think>\nlanguage: ja\n</think>\n[Instrumental]")
    assert a.labels["vocal_language"] == "ja"
    assert a.labels["lyrics"] == "[Instrumental]"


def test_instrumental_with_lyrics_header_variants():
    a = parse_answer("<think>\nbpm: 128\nlanguage: unknown\n</think>\n\n# Lyrics\n[Instrumental]\n<|im_end|><|endoftext|>")
    assert a.labels == {"bpm": 128, "vocal_language": "unknown", "lyrics": "[Instrumental]"}


def test_missing_close_tag_keeps_fields_but_reads_no_lyrics():
    a = parse_answer("<think>\nbpm: 100\ncaption: dreamy synthwave with arpeggios\nkeyscale: F# minor\n[Verse]\nla")
    assert a.labels["bpm"] == 100 and a.labels["keyscale"] == "F# minor"
    assert "lyrics" not in a.labels
    assert any("</think>" in n for n in a.notes)


def test_unknown_and_placeholder_values_are_dropped_quietly():
    a = parse_answer("<think>\nbpm: unknown\nkeyscale: N/A\ntimesignature: \ncaption: lo-fi beat\n</think>")
    assert a.labels == {"caption": "lo-fi beat"}
    assert a.notes == []


def test_invalid_values_are_dropped_with_a_note():
    a = parse_answer("<think>\nbpm: 999\nkeyscale: H dorian\ntimesignature: 7/8\nduration: 3:05\n</think>")
    assert a.labels == {"duration": 185.0}
    assert len(a.notes) == 3 and any("bpm" in n for n in a.notes)


def test_extra_fields_aliases_and_units():
    a = parse_answer("<think>\nBPM: 75 bpm\nmood: calm\ntime_signature: 3/4\nKey: Bbm\ninstruments: piano\n"
                     "duration: 200 seconds\n</think>")
    assert a.labels == {"bpm": 75, "timesignature": "3", "keyscale": "Bb minor", "duration": 200.0}
    assert a.extra == {"mood": "calm", "instruments": "piano"}
    assert any("mood" in n for n in a.notes)


def test_prompt_opened_think_itself():
    a = parse_answer("bpm: 140\ncaption: drum and bass\n</think>\n[Verse]\nGo")
    assert a.labels["bpm"] == 140 and a.labels["lyrics"] == "[Verse]\nGo"


def test_garbage_gives_nothing_usable():
    for text in ["", "<|audio_code_3|><|audio_code_9|>\ufffd\x01 orus", "kj </think> \x02<|audio_code_1|>",
                 "<think>\ncaption: <|audio_code_5|> \ufffd\n</think>\nla<|audio_code_2|>"]:
        a = parse_answer(text)
        assert not a.usable, text
        assert a.notes


def test_duplicate_key_keeps_the_first():
    a = parse_answer("<think>\nbpm: 90\nbpm: 180\n</think>")
    assert a.labels == {"bpm": 90}
