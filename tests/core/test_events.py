import json
import math

from state import events as ev


def test_writer_nan_inf_become_null(tmp_path):
    with ev.EventWriter(tmp_path) as w:
        w.emit("step", step=1, loss=math.nan, grad_norm=math.inf, nested={"x": -math.inf})
    line = (tmp_path / "events.jsonl").read_text().strip()
    obj = json.loads(line)
    assert obj["loss"] is None and obj["grad_norm"] is None and obj["nested"]["x"] is None
    assert obj["type"] == "step" and "t" in obj


def test_tail_reads_only_new_bytes_and_keeps_partial_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "a", "t": 1}\n{"type": "b", "t": 2}\n{"type": "c"')
    tail = ev.EventTail(path, keep=True)
    assert [e["type"] for e in tail.read_new()] == ["a", "b"]
    off = tail.offset
    assert tail.read_new() == []  # nothing new: nothing read
    assert tail.offset == off
    with open(path, "a") as f:
        f.write(', "t": 3}\n{"type": "d", "t": 4}\n')
    assert [e["type"] for e in tail.read_new()] == ["c", "d"]
    assert [e["type"] for e in tail.events] == ["a", "b", "c", "d"]


def test_tail_detects_truncation_and_replacement(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "a"}\n{"type": "b"}\n')
    tail = ev.EventTail(path, keep=True)
    tail.read_new()
    path.write_text('{"type": "x"}\n')  # shorter: truncated / rewritten
    assert [e["type"] for e in tail.read_new()] == ["x"]
    assert tail.reset_count == 1 and [e["type"] for e in tail.events] == ["x"]
    replacement = tmp_path / "new.jsonl"
    replacement.write_text('{"type": "y"}\n{"type": "z"}\n{"type": "w"}\n')
    replacement.replace(path)  # same path, new inode
    assert [e["type"] for e in tail.read_new()] == ["y", "z", "w"]
    assert tail.reset_count == 2


def test_tail_skips_garbage_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"type": "a"}\nnot json\n\xff\xfe\n[1,2]\n{"type": "b"}\n')
    tail = ev.EventTail(path)
    assert [e["type"] for e in tail.read_new()] == ["a", "b"]
    assert tail.bad_lines == 3  # two undecodable lines and one that is not an event object


def test_last_event_reads_the_end_only(tmp_path):
    with ev.EventWriter(tmp_path) as w:
        w.emit("start")
        for i in range(5000):
            w.emit("step", step=i, pad="x" * 50)
        w.emit("checkpoint", step=4999)
    path = tmp_path / "events.jsonl"
    assert ev.last_event(path)["type"] == "checkpoint"
    assert ev.last_event(path, ["step"])["step"] == 4999
    assert ev.last_event(path, ["start"]) is None  # not in the tail, and no full read by default
    assert ev.last_event(path, ["start"], whole_file=True)["type"] == "start"
    assert ev.last_event(tmp_path / "missing.jsonl") is None


def test_last_event_grows_its_window_for_long_lines(tmp_path):
    with ev.EventWriter(tmp_path) as w:
        w.emit("start")
        w.emit("error", message="x" * 20_000)  # one line longer than the first 4 KB window
    path = tmp_path / "events.jsonl"
    assert ev.last_event(path)["type"] == "error"
    assert ev.last_event(path, ["start"])["type"] == "start"  # the whole file is within 64 KB
