"""Real detached subprocesses: launch, observe, stop, kill -9, reconcile, outlive the launcher."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from state import events, jobs, paths
from state.fsutil import write_json

from locations import REPO


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("ACELORA_HOME", str(tmp_path))
    return tmp_path


def wait_for(pred, timeout=30.0, every=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(every)
    return False


def new_job(ws, name, steps=400, interval=0.02):
    d = paths.run_dir(name)
    d.mkdir(parents=True)
    write_json(d / "params.json", {"steps": steps, "interval_s": interval})
    return d


def steps_seen(d):
    return [e for e in events.read_all(d / "events.jsonl") if e["type"] == "step"]


def test_job_json_written_with_pid_and_create_time_and_runs_to_completion(ws):
    d = new_job(ws, "done", steps=5, interval=0.01)
    info = jobs.launch(d, "selftest")
    assert info["pid"] and info["create_time"]
    assert json.loads((d / "job.json").read_text())["pid"] == info["pid"]
    assert wait_for(lambda: jobs.status(d).status == "completed")
    st = jobs.reconcile(d)
    assert st.status == "completed" and len(steps_seen(d)) == 5
    assert (d / "log.txt").exists()


def test_stop_saves_and_ends_stopped(ws):
    d = new_job(ws, "stopme")
    jobs.launch(d, "selftest")
    assert wait_for(lambda: len(steps_seen(d)) >= 3 and jobs.is_ready(d))
    assert jobs.status(d).status == "running"
    assert jobs.stop(d, wait_s=20) == "stopped"
    evs = events.read_all(d / "events.jsonl")
    assert evs[-1]["type"] == "end" and evs[-1]["status"] == "stopped"
    assert any(e["type"] == "checkpoint" for e in evs)
    assert jobs.reconcile(d).status == "stopped"


def test_stop_flag_alone_before_ready_is_honoured(ws, monkeypatch):
    d = new_job(ws, "flag")
    jobs.launch(d, "selftest")
    jobs.request(d, "stop")  # as if the job had not installed its handlers yet
    assert wait_for(lambda: jobs.status(d).status == "stopped")


def test_kill_9_then_reconcile_says_died_with_last_event_and_log(ws):
    d = new_job(ws, "victim")
    info = jobs.launch(d, "selftest")
    assert wait_for(lambda: len(steps_seen(d)) >= 2)
    os.kill(info["pid"], signal.SIGKILL)
    assert wait_for(lambda: not jobs.is_alive(d))
    st = jobs.reconcile(d)
    assert st.status == "died"
    assert "Last event: step" in st.detail
    end = events.last_event(d / "events.jsonl")
    assert end["type"] == "end" and end["status"] == "died"
    assert jobs.reconcile(d).status == "died"  # idempotent: no second end event
    assert sum(e["type"] == "end" for e in events.read_all(d / "events.jsonl")) == 1


def test_resume_after_death_continues(ws):
    d = new_job(ws, "resume", steps=30, interval=0.01)
    info = jobs.launch(d, "selftest")
    assert wait_for(lambda: len(steps_seen(d)) >= 3)
    jobs.request(d, "save_now")
    assert wait_for(lambda: (d / "checkpoints" / "latest.json").exists())
    os.kill(info["pid"], signal.SIGKILL)
    assert wait_for(lambda: jobs.reconcile(d).status == "died")
    saved = json.loads((d / "checkpoints" / "latest.json").read_text())["step"]
    jobs.launch(d, "selftest")
    assert wait_for(lambda: jobs.status(d).status == "completed")
    evs = events.read_all(d / "events.jsonl")
    resumed = [e for e in evs if e["type"] == "resumed"]
    assert resumed and resumed[-1]["step"] == saved
    assert steps_seen(d)[-1]["step"] == 30


def test_pid_reuse_is_not_mistaken_for_the_job(ws):
    d = new_job(ws, "reuse")
    write_json(d / "job.json", {"kind": "selftest", "pid": os.getpid(), "create_time": 1.0,
                                "started_at": time.time()})
    assert not jobs.is_alive(d)  # our pid, but a different create_time
    assert jobs.status(d).status == "died"


def test_zombie_is_not_alive(ws):
    d = new_job(ws, "zombie")
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    import psutil
    ctime = psutil.Process(p.pid).create_time()
    assert wait_for(lambda: psutil.Process(p.pid).status() == psutil.STATUS_ZOMBIE, timeout=10)
    write_json(d / "job.json", {"kind": "x", "pid": p.pid, "create_time": ctime, "started_at": time.time()})
    assert not jobs.is_alive(d)
    p.wait()


def test_job_survives_the_launching_process_exiting(ws):
    d = new_job(ws, "orphan", steps=60, interval=0.05)
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from pathlib import Path; from state import jobs; "
            f"jobs.launch(Path({str(d)!r}), 'selftest')")
    launcher = subprocess.run([sys.executable, "-c", code], env={**os.environ}, timeout=60)
    assert launcher.returncode == 0
    assert wait_for(lambda: len(steps_seen(d)) >= 3)
    info = jobs.job_info(d)
    assert jobs.is_alive(d)
    import psutil
    assert os.getsid(info["pid"]) == info["pid"]  # its own session: the launcher's signals can't reach it
    assert psutil.Process(info["pid"]).ppid() != os.getpid()
    jobs.stop(d, wait_s=20)
    assert jobs.reconcile(d).status == "stopped"


def test_second_signal_stops_at_once(ws):
    d = new_job(ws, "twice", steps=100000, interval=0.001)
    info = jobs.launch(d, "selftest")
    assert wait_for(lambda: jobs.is_ready(d) and len(steps_seen(d)) > 1)
    os.kill(info["pid"], signal.SIGTERM)
    os.kill(info["pid"], signal.SIGTERM)
    assert wait_for(lambda: not jobs.is_alive(d), timeout=20)
    assert jobs.reconcile(d).status == "stopped"


def test_active_jobs_lists_running_only(ws):
    a = new_job(ws, "a")
    b = new_job(ws, "b", steps=1, interval=0.0)
    jobs.launch(a, "selftest")
    jobs.launch(b, "selftest")
    assert wait_for(lambda: jobs.status(b).status == "completed")
    assert [j.job_id for j in jobs.active_jobs()] == ["a"]
    jobs.stop(a, wait_s=20)
    assert jobs.active_jobs() == []


def test_control_flags_validated(ws):
    with pytest.raises(ValueError, match="unknown control flag"):
        jobs.request(ws, "explode")


def test_headless_job_registers_itself_and_is_listed(ws):
    d = paths.run_dir("headless")
    d.mkdir(parents=True)
    write_json(d / "params.json", {"steps": 3, "interval_s": 0.01})
    r = subprocess.run([sys.executable, str(REPO / "trainer" / "run.py"), "selftest", "--job-dir", str(d)],
                       env={**os.environ}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = jobs.job_info(d)
    assert info["headless"] and info["kind"] == "selftest" and info["pid"]
    assert jobs.reconcile(d).status == "completed"
    assert d in jobs.list_jobs(paths.runs_dir())


def test_jobs_inside_a_run_are_listed_too(ws):
    run = paths.run_dir("r")
    ab = run / "samples" / "ab-1"
    ab.mkdir(parents=True)
    write_json(run / "job.json", {"kind": "train", "pid": None, "started_at": 1.0})
    write_json(ab / "job.json", {"kind": "ab", "pid": None, "started_at": 2.0})
    assert jobs.list_jobs() == [ab, run]


def test_log_view_leaves_out_library_notices_and_keeps_log_txt_whole(ws):
    d = paths.run_dir("noisy")
    d.mkdir(parents=True)
    raw = ("\rLoading:   0%|          | 0/6 [00:00<?, ?it/s]/x/.venv/lib/python3.11/site-packages/torch/nn/utils/"
           "weight_norm.py:144: FutureWarning: `weight_norm` is deprecated.\n"
           "  WeightNorm.apply(module, name, dim)\n"
           "\rLoading:  50%|#####     | 3/6\rLoading: 100%|##########| 6/6 [00:02<00:00]\n"
           "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'. "
           "Please make sure you already `pip install kernels`\n"
           "ValueError: the dataset has no usable tracks\n")
    (d / jobs.LOG_FILE).write_bytes(raw.encode())
    lines, hidden = jobs.log_view(d)
    assert hidden == 2
    assert lines == ["Loading:   0%|          | 0/6 [00:00<?, ?it/s]", "Loading: 100%|##########| 6/6 [00:02<00:00]",
                     "ValueError: the dataset has no usable tracks"]
    assert (d / jobs.LOG_FILE).read_bytes() == raw.encode()
