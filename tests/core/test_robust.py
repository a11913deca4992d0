"""Issue 14, classes 3 and 4 at the ground floor: a full disk, torn event lines, damaged job files,
and the job lifecycle staying true (the reason a job died, launches, stale flags)."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

import pytest
from disk_kit import fill, small_tmpfs

from state import events, fsutil, jobs, paths
from state.fsutil import write_json

from locations import REPO


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("ACELORA_HOME", str(tmp_path))
    fsutil._write_failures.clear()
    return tmp_path


def wait_for(pred, timeout=30.0, every=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(every)
    return False


def new_job(name, steps=400, interval=0.02):
    d = paths.run_dir(name)
    d.mkdir(parents=True)
    write_json(d / "params.json", {"steps": steps, "interval_s": interval})
    return d


# ---- events: no partial line survives, a torn line never eats the next one ------------------------

def test_enospc_in_the_writer_leaves_no_partial_line_and_the_next_event_reads(ws):
    with small_tmpfs(ws / "disk", "256k") as disk:
        job = disk / "job"
        tail = events.EventTail(job / "events.jsonl")
        with events.EventWriter(job) as w:
            w.emit("start")
            assert [e["type"] for e in tail.read_new()] == ["start"]
            filler = fill(disk)
            with pytest.raises(fsutil.SaveError) as err:
                w.emit("step", step=1, pad="x" * 20_000)
            assert err.value.errno == errno.ENOSPC and "disk full at" in str(err.value)
            assert (job / "events.jsonl").read_bytes().endswith(b"\n")  # the failed line was cut off
            filler.unlink()
            w.emit("end", status="failed")
        raw = (job / "events.jsonl").read_bytes()
        assert [json.loads(x)["type"] for x in raw.splitlines()] == ["start", "end"]
        assert [e["type"] for e in tail.read_new()] == ["end"] and tail.bad_lines == 0


def test_a_torn_tail_from_a_killed_writer_is_cut_before_the_next_event(ws):
    path = ws / "events.jsonl"
    path.write_bytes(b'{"t": 1, "type": "start"}\n{"t": 2, "type": "st')  # kill -9 mid-write
    events.append_event(ws, "end", status="died")
    assert [e["type"] for e in events.read_all(path)] == ["start", "end"]


def test_a_reader_that_saw_the_torn_bytes_still_gets_the_next_event(ws):
    path = ws / "events.jsonl"
    path.write_bytes(b'{"t": 1, "type": "start"}\n{"t": 2, "type": "st')
    tail = events.EventTail(path)
    assert [e["type"] for e in tail.read_new()] == ["start"]  # holds the torn bytes as its partial line
    events.append_event(ws, "end", status="failed", message="a longer event than the torn one")
    assert tail.check_reset()  # the bytes before its offset changed: it starts over
    assert [e["type"] for e in tail.read_new()] == ["start", "end"]


def test_an_old_file_with_an_event_glued_to_a_torn_line_keeps_that_event(ws):
    path = ws / "events.jsonl"
    path.write_bytes(b'{"t": 1, "type": "start"}\n{"t": 2, "type": "st{"t": 3, "type": "end", "status": "failed"}\n')
    assert [e["type"] for e in events.read_all(path)] == ["start", "end"]
    assert events.last_event(path)["type"] == "end"


def test_a_job_that_hits_a_full_disk_ends_failed_with_the_reason(ws):
    with small_tmpfs(ws / "disk", "2m") as disk:
        os.environ["ACELORA_HOME"] = str(disk)
        d = new_job("full", steps=100_000, interval=0.005)
        jobs.launch(d, "selftest")
        assert wait_for(lambda: (d / "events.jsonl").exists() and (d / "events.jsonl").stat().st_size > 2000)
        fill(disk)
        assert wait_for(lambda: not jobs.is_alive(d), timeout=30)
        st = jobs.reconcile(d)
        assert st.status == "failed", st
        evs = events.read_all(d / "events.jsonl")
        err = next(e for e in evs if e["type"] == "error")
        assert "disk full at" in err["message"] and "disk is full" in err["hint"].lower()
        assert evs[-1]["type"] == "end" and evs[-1]["status"] == "failed"
        raw = (d / "events.jsonl").read_bytes()
        assert raw.endswith(b"\n") and all(json.loads(x) for x in raw.splitlines())


def test_torch_save_on_a_full_disk_gets_the_disk_full_hint(ws):
    torch = pytest.importorskip("torch")
    from trainer.hints import hint_for

    with small_tmpfs(ws / "disk", "256k") as disk:
        with pytest.raises(RuntimeError) as err:
            torch.save({"w": torch.zeros(200_000)}, disk / "training_state.pt")
    assert "unexpected pos" in str(err.value) or "write" in str(err.value).lower()
    assert "disk is full" in hint_for(err.value).lower()


# ---- reading never needs to write ---------------------------------------------------------------

def test_reconcile_on_a_full_disk_derives_died_and_notes_the_failure_once(ws):
    with small_tmpfs(ws / "disk", "1m") as disk:
        os.environ["ACELORA_HOME"] = str(disk)
        d = paths.run_dir("dead")
        d.mkdir(parents=True)
        write_json(d / "job.json", {"kind": "train", "pid": 999_999_999, "create_time": 1.0, "started_at": 1.0})
        line = json.dumps({"t": 2, "type": "step", "step": 5, "pad": ""})
        pad = 4096 - len(line) - 1  # a whole page: the next byte needs a new one (tmpfs is page-granular)
        (d / "events.jsonl").write_text(line.replace('"pad": ""', '"pad": "' + "x" * pad + '"') + "\n")
        filler = fill(disk)
        for _ in range(3):
            assert jobs.reconcile(d).status == "died"
        assert [s.status for s in map(jobs.reconcile, jobs.list_jobs())] == ["died"]
        assert fsutil.write_failures() == [f"disk full at {d / 'events.jsonl'}: free space (Runs → delete)"]
        filler.unlink()
        assert fsutil.write_failures() == []  # room again: the message goes
        st = jobs.reconcile(d)
        assert events.last_event(d / "events.jsonl")["type"] == "end" and st.status == "died"


# ---- damaged job files ---------------------------------------------------------------------------

@pytest.mark.parametrize("content,reason", [
    (b'{"kind": "train", "pid": ', "not valid JSON"),
    (b"\xff\xfe garbage", "not UTF-8"),
    (b"[1, 2]", "a JSON list"),
    (b'{"kind": "train", "pid": "abc"}', "pid is 'abc'"),
    (b'{"kind": "train", "started_at": "yesterday"}', "started_at"),
    (b"", "empty"),
])
def test_a_damaged_job_json_is_listed_as_damaged_and_the_others_stay_usable(ws, content, reason):
    bad = paths.run_dir("bad")
    bad.mkdir(parents=True)
    (bad / "job.json").write_bytes(content)
    good = paths.run_dir("good")
    good.mkdir(parents=True)
    write_json(good / "job.json", {"kind": "train", "pid": None, "started_at": time.time()})
    events.append_event(good, "end", status="completed")
    assert set(jobs.list_jobs()) == {bad, good}
    st = jobs.reconcile(bad)
    assert st.status == "damaged" and reason in st.detail and "job.json" in st.detail
    assert jobs.reconcile(good).status == "completed"
    assert jobs.active_jobs() == []
    assert (bad / "job.json").read_bytes() == content  # left exactly as it was


# ---- lifecycle --------------------------------------------------------------------------------

def test_the_reason_a_job_died_is_shown_to_every_later_reader(ws):
    d = new_job("victim")
    info = jobs.launch(d, "selftest")
    assert wait_for(lambda: len(events.read_all(d / "events.jsonl")) >= 3)
    os.kill(info["pid"], 9)
    assert wait_for(lambda: not jobs.is_alive(d))
    first = jobs.reconcile(d)
    assert first.status == "died" and "Last event: step" in first.detail
    later = jobs.status(d)  # a second tab, a restarted dashboard: reads the persisted end event
    assert later.status == "died" and later.detail == first.detail
    assert sum(e["type"] == "end" for e in events.read_all(d / "events.jsonl")) == 1


def test_a_launch_killed_before_its_first_event_is_not_the_previous_runs_end(ws):
    d = new_job("again", steps=2, interval=0.001)
    jobs.launch(d, "selftest")
    assert wait_for(lambda: jobs.status(d).status == "completed")
    jobs.launch(d, "selftest", python="/bin/false")  # dies at once, before writing anything
    assert wait_for(lambda: not jobs.is_alive(d))
    st = jobs.reconcile(d)
    assert st.status == "died", st
    assert "no event in this launch" in st.detail and "Last event: end" not in st.detail
    assert jobs.status(d).status == "died"


def test_stale_flags_are_cleared_when_a_headless_job_starts(ws):
    d = new_job("headless", steps=5, interval=0.01)
    (d / "control").mkdir()
    for flag in ("stop", "save_now"):
        (d / "control" / flag).write_text("old")
        os.utime(d / "control" / flag, (time.time() - 60, time.time() - 60))
    r = subprocess.run([sys.executable, str(REPO / "trainer" / "run.py"), "selftest", "--job-dir", str(d)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    steps = [e for e in events.read_all(d / "events.jsonl") if e["type"] == "step"]
    assert len(steps) == 5 and jobs.status(d).status == "completed"
    assert not (d / "control" / "stop").exists() and not (d / "control" / "save_now").exists()


def test_a_flag_written_after_the_start_is_kept(ws):
    d = new_job("fresh")
    (d / "control").mkdir()
    (d / "control" / "stop").write_text("now")
    assert jobs.clear_stale_flags(d, since=time.time() - 30) == []
    assert jobs.clear_stale_flags(d, since=time.time() + 30) == ["stop"]
