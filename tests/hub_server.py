"""A local stand-in for the Hugging Face Hub on 127.0.0.1, for tests that must never touch the real one.

It implements just the endpoints that the huggingface_hub 2.4 calls in trainer/cloud/publish.py,
trainer/cloud/sync.py, trainer/cloud/space_watch.py, trainer/cloud/remote.py and state/cloud/hub.py
hit (read from that library's source):

    POST /api/repos/create                         create_repo
    GET  /api/models/{repo}[/revision/{rev}]       repo_info / model_info (create_repo's exist_ok path,
                                                   snapshot_download); ?blobs=true adds file sizes
    POST /api/validate-yaml                        create_commit, when README.md is in the commit
    POST /api/models/{repo}/preupload/{rev}        every commit: we answer "regular" for each file, so its
                                                   content arrives base64 in the commit itself (no LFS leg)
    POST /api/models/{repo}/commit/{rev}           NDJSON: header, file, deletedFile, deletedFolder
    GET  /api/models/{repo}/tree/{rev}[/path]      list_repo_files / list_repo_tree (upload_folder deletions,
                                                   snapshot_download's listing, also its dry run)
    HEAD|GET /{repo}/resolve/{rev}/{path}          hf_hub_download
    POST /api/spaces/{repo}/pause | /sleeptime     pause_space, set_space_sleep_time
    GET  /api/whoami-v2                            whoami (run_job & co. ask it for the namespace)
    POST /api/jobs/{ns}                            run_job: the "Job" is a local subprocess (see FakeJob)
    GET  /api/jobs/{ns}/{id}[/logs]                inspect_job, fetch_job_logs (SSE, no follow)
    GET  /api/jobs/hardware                        list_jobs_hardware (two flavours, per-minute prices)
    POST /api/jobs/{ns}/{id}/cancel                cancel_job

Dataset repos (repo_type="dataset") answer the same routes under /api/datasets/ and /datasets/;
they are kept in `repos` as "datasets/<id>".

Tokens: WRITE_TOKEN may write, READ_TOKEN gets 403 on writes, any other token 401. Reads: a public
repo needs no token; a private one answers 401 RepoNotFound without a valid token; a gated one
answers 401 GatedRepo without a token and 403 GatedRepo to READ_TOKEN (only WRITE_TOKEN's account
accepted its terms). Revisions: `main`, or any commit sha the repo has had (each commit keeps its
snapshot); anything else is 404 RevisionNotFound. Every request is recorded (method, path, query,
token) so tests can assert what was called; `add_repo` seeds a repo without HTTP.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

WRITE_TOKEN = "hf_WRITEtokenTESTtokenWRITEtoken00"
READ_TOKEN = "hf_READtokenTESTtokenREADtoken0000"
USER = "alice"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, repo_id: str, private: bool, gated: bool = False):
        self.repo_id, self.private, self.gated = repo_id, private, gated
        self.files: dict[str, bytes] = {}
        self.commits: list[dict] = []
        self.sha = "0" * 40
        self.snapshots: dict[str, dict[str, bytes]] = {self.sha: {}}

    def at(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """(commit sha, files) at a branch name or commit sha; None when the repo has no such revision."""
        sha = self.sha if revision == "main" else revision
        return (sha, self.snapshots[sha]) if sha in self.snapshots else None

    def commit(self, summary: str, adds: dict[str, bytes], deletes: list[str]) -> str:
        for d in deletes:
            for p in [p for p in self.files if p == d or p.startswith(d.rstrip("/") + "/")]:
                del self.files[p]
        self.files.update(adds)
        self.sha = hashlib.sha1(f"{len(self.commits)}{summary}{sorted(self.files)}".encode()).hexdigest()
        self.commits.append({"summary": summary, "added": sorted(adds), "deleted": deletes, "sha": self.sha})
        self.snapshots[self.sha] = dict(self.files)
        return self.sha


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_APP_DIR = "/app"  # where the project's Docker image keeps the code (Dockerfile WORKDIR)


def _iso(t: float | None) -> str | None:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t else None


class FakeJob:
    """A Job as a local subprocess: the image is this checkout, the container's disk a fresh folder.

    It runs the spec's command and environment (its secrets as environment variables, like the
    platform), with nothing of the test process's own environment except what a container would
    also have (PATH, the Hub endpoint): no ACELORA_HOME, no HF_TOKEN unless passed as a secret.
    `python` is this interpreter (the image's Python), and IMAGE_APP_DIR (in the command and the
    environment) maps to a scratch folder whose code folders link to this checkout, so the Job's
    workspace is its own.
    """

    def __init__(self, hub: "FakeHub", job_id: str, ns: str, spec: dict):
        self.id, self.ns, self.spec = job_id, ns, spec
        self.created = time.time()
        self.finished: float | None = None
        self.canceled = False
        self.disk = tempfile.mkdtemp(prefix=f"fake-job-{job_id[:8]}-")
        app = os.path.join(self.disk, "app")
        os.makedirs(app)
        for name in ("trainer", "state"):
            os.symlink(os.path.join(REPO_ROOT, name), os.path.join(app, name))
        def in_image(v: str) -> str:
            return app + v[len(IMAGE_APP_DIR):] if v == IMAGE_APP_DIR or v.startswith(IMAGE_APP_DIR + "/") else v

        argv = [sys.executable if a == "python" else in_image(a) for a in spec["command"]]
        env = {"PATH": os.environ.get("PATH", ""), "HOME": self.disk, "HF_HOME": os.path.join(self.disk, "hf"),
               "HF_ENDPOINT": hub.url, "TMPDIR": self.disk, "OMP_NUM_THREADS": "1",
               **{k: in_image(str(v)) for k, v in (spec.get("environment") or {}).items()},
               **{k: str(v) for k, v in (spec.get("secrets") or {}).items()}}
        self.log_path = os.path.join(self.disk, "job.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.time()

    def stage(self) -> tuple[str, str | None]:
        rc = self.proc.poll()
        if rc is None:
            return "RUNNING", None
        if self.finished is None:
            self.finished = time.time()
        if self.canceled:
            return "CANCELED", None
        if rc == 0:
            return "COMPLETED", None
        return "ERROR", f"Job failed with exit code: {rc if rc > 0 else 128 - rc}"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def info(self, url: str) -> dict:
        stage, message = self.stage()
        image = self.spec.get("dockerImage")
        return {"id": self.id, "createdAt": _iso(self.created), "startedAt": _iso(self.started),
                "finishedAt": _iso(self.finished), "dockerImage": image, "spaceId": self.spec.get("spaceId"),
                "command": self.spec["command"], "arguments": [], "environment": self.spec.get("environment"),
                "secrets": sorted(self.spec.get("secrets") or {}),  # names only, as the Hub shows them
                "flavor": self.spec.get("flavor"), "labels": self.spec.get("labels"),
                "status": {"stage": stage, "message": message}, "owner": {"id": "u1", "name": self.ns, "type": "user"}}

    def log_lines(self) -> list[str]:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()


class FakeHub:
    def __init__(self):
        self.jobs: dict[str, FakeJob] = {}
        self.jobs_down = 0  # set > 0: that many requests about a Job answer 503
        self.repos: dict[str, Repo] = {}
        self.requests: list[dict] = []
        self.validated_yaml: list[str] = []
        self.paused: list[str] = []
        self.sleep: dict[str, int] = {}
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_POST(self):
                hub._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for job in self.jobs.values():
            job.kill()
            shutil.rmtree(job.disk, ignore_errors=True)
        self.server.shutdown()
        self.server.server_close()

    # ---- helpers ----------------------------------------------------------------------------

    def paths_called(self, method: str | None = None) -> list[str]:
        return [r["path"] for r in self.requests if method is None or r["method"] == method]

    def add_repo(self, repo_id: str, files: dict[str, bytes], private: bool = False, gated: bool = False) -> Repo:
        """A model repo with one commit holding `files`, as if someone had published it."""
        repo = self.repos[repo_id] = Repo(repo_id, private, gated)
        repo.commit("initial commit", dict(files), [])
        return repo

    def downloaded(self, repo_id: str) -> list[str]:
        """The files of `repo_id` whose bytes were fetched (GET on resolve/), in request order."""
        prefix = f"/{repo_id}/resolve/"
        return [r["path"][len(prefix):].split("/", 1)[1] for r in self.requests
                if r["method"] == "GET" and r["path"].startswith(prefix)]

    @staticmethod
    def _send(h, status: int, body=None, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        h.send_response(status)
        h.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _auth(self, h, write: bool) -> bool:
        tok = (h.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if tok == WRITE_TOKEN or (tok == READ_TOKEN and not write):
            return True
        if tok == READ_TOKEN:
            self._send(h, 403, {"error": "You don't have the rights to create a model under this namespace"})
        else:
            self._send(h, 401, {"error": "Invalid credentials in Authorization header"},
                       {"X-Error-Message": "Invalid credentials in Authorization header"})
        return False

    def _repo(self, h, repo_id: str) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._send(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        return repo

    def _readable(self, h, repo_id: str, revision: str) -> tuple[Repo, str, dict[str, bytes]] | None:
        """(repo, commit sha, files) when this request may read `repo_id` at `revision`; else answers the error."""
        tok = (h.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if tok and tok not in (WRITE_TOKEN, READ_TOKEN):
            self._send(h, 401, {"error": "Invalid credentials in Authorization header"},
                       {"X-Error-Message": "Invalid credentials in Authorization header"})
            return None
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not tok):
            self._send(h, 401 if not tok else 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if repo.gated and tok != WRITE_TOKEN:
            self._send(h, 403 if tok else 401, {"error": f"Access to model {repo_id} is restricted."},
                       {"X-Error-Code": "GatedRepo", "X-Error-Message": f"Access to model {repo_id} is restricted."})
            return None
        found = repo.at(revision)
        if found is None:
            self._send(h, 404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo, *found

    # ---- routing ----------------------------------------------------------------------------

    def _handle(self, h, method: str) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        tok = (h.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        with self.lock:
            self.requests.append({"method": method, "path": path, "query": query, "token": tok})
            self._route(h, method, path, body, query)

    def _route(self, h, method: str, path: str, body: bytes, query: dict | None = None) -> None:
        if path.startswith("/api/whoami") or path.startswith("/api/jobs/"):
            return self._jobs_route(h, method, path, body, query or {})
        if m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(/.*)?", path):  # the same routes, dataset repos
            return self._route(h, method, f"/api/models/datasets/{m.group(1)}{m.group(2) or ''}", body, query)
        if method == "POST" and path == "/api/repos/create":
            if not self._auth(h, write=True):
                return
            p = json.loads(body)
            repo_id = f"{p.get('organization') or USER}/{p['name']}"
            if p.get("type") == "dataset":
                repo_id = "datasets/" + repo_id
            if repo_id in self.repos:
                return self._send(h, 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})
            self.repos[repo_id] = Repo(repo_id, p.get("visibility") == "private")
            return self._send(h, 200, {"url": f"{self.url}/{repo_id}", "name": repo_id})
        if method == "POST" and path == "/api/validate-yaml":
            self.validated_yaml.append(json.loads(body)["content"])
            return self._send(h, 200, {"errors": [], "warnings": []})
        if m := re.fullmatch(r"/api/spaces/([^/]+/[^/]+)/(pause|sleeptime)", path):
            if not self._auth(h, write=True):
                return
            if m.group(2) == "pause":
                self.paused.append(m.group(1))
                return self._send(h, 200, {"stage": "PAUSED", "hardware": {"current": None, "requested": "l4x1"}})
            self.sleep[m.group(1)] = json.loads(body)["seconds"]
            return self._send(h, 200, {"stage": "RUNNING", "hardware": {"current": "l4x1", "requested": "l4x1"},
                                       "gcTimeout": self.sleep[m.group(1)]})
        if m := re.fullmatch(r"/api/models/((?:datasets/)?[^/]+/[^/]+)/preupload/([^/]+)", path):
            return self._preupload(h, m.group(1), body)
        if m := re.fullmatch(r"/api/models/((?:datasets/)?[^/]+/[^/]+)/commit/([^/]+)", path):
            return self._commit(h, m.group(1), body)
        if m := re.fullmatch(r"/api/models/((?:datasets/)?[^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
            return self._tree(h, m.group(1), m.group(2), (m.group(3) or "").lstrip("/"))
        if m := re.fullmatch(r"/api/models/((?:datasets/)?[^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            if (found := self._readable(h, m.group(1), m.group(2) or "main")) is None:
                return
            repo, sha, files = found
            blobs = (query or {}).get("blobs") == "true"
            siblings = [{"rfilename": f, **({"size": len(d), "blobId": git_oid(d)} if blobs else {})}
                        for f, d in sorted(files.items())]
            return self._send(h, 200, {"id": repo.repo_id, "sha": sha, "private": repo.private,
                                       "gated": "auto" if repo.gated else False, "siblings": siblings})
        if m := re.fullmatch(r"/((?:datasets/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            if (found := self._readable(h, m.group(1), m.group(2))) is None:
                return
            _repo, sha, files = found
            data = files.get(m.group(3))
            if data is None:
                return self._send(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            return self._send(h, 200, raw=data, headers={"X-Repo-Commit": sha, "ETag": f'"{git_oid(data)}"'})
        self._send(h, 404, {"error": f"fake hub: no route for {method} {path}"})

    # ---- Jobs ------------------------------------------------------------------------------------

    def job(self, job_id: str | None = None) -> FakeJob:
        """A Job by id, or the one created last."""
        return self.jobs[job_id] if job_id else list(self.jobs.values())[-1]

    def _jobs_route(self, h, method: str, path: str, body: bytes, query: dict) -> None:
        from huggingface_hub import JobHardware

        tok = (h.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if path == "/api/whoami-v2":
            if tok not in (WRITE_TOKEN, READ_TOKEN):
                return self._send(h, 401, {"error": "Invalid credentials in Authorization header"})
            role = "write" if tok == WRITE_TOKEN else "read"
            return self._send(h, 200, {"type": "user", "name": USER, "auth": {"accessToken": {"role": role}}})
        if not self._auth(h, write=method == "POST"):
            return
        if path == "/api/jobs/hardware":  # two entries, in the API's shape (per-minute prices)
            return self._send(h, 200, [
                {"name": "cpu-basic", "prettyName": "CPU Basic", "cpu": "2 vCPU", "ram": "16 GB", "accelerator": None,
                 "unitCostMicroUSD": 167, "unitCostUSD": 0.000167, "unitLabel": "minute"},
                {"name": "l4x1", "prettyName": "1x Nvidia L4", "cpu": "8 vCPU", "ram": "30 GB", "accelerator": None,
                 "unitCostMicroUSD": 13333, "unitCostUSD": 0.013333, "unitLabel": "minute"}])
        if method == "POST" and (m := re.fullmatch(r"/api/jobs/([^/]+)", path)):
            spec = json.loads(body)
            if spec.get("flavor") not in {f.value for f in JobHardware}:
                return self._send(h, 400, {"error": f"Invalid flavor: {spec.get('flavor')}"})
            job_id = hashlib.sha1(f"{time.time()}{len(self.jobs)}".encode()).hexdigest()[:24]
            self.jobs[job_id] = FakeJob(self, job_id, m.group(1), spec)
            return self._send(h, 200, self.jobs[job_id].info(self.url))
        m = re.fullmatch(r"/api/jobs/([^/]+)/([0-9a-f]+)(?:/(logs|cancel))?", path)
        job = self.jobs.get(m.group(2)) if m else None
        if job is not None and self.jobs_down > 0:  # a Hub blip: the next requests about Jobs answer 503
            self.jobs_down -= 1
            return self._send(h, 503, {"error": "Service Unavailable"})
        if job is None:
            return self._send(h, 404, {"error": "Job not found"})
        if m.group(3) == "cancel" and method == "POST":
            job.canceled = job.proc.poll() is None
            job.kill()
            return self._send(h, 200, {})
        if m.group(3) == "logs":
            lines = job.log_lines()
            if query.get("tail"):
                lines = lines[-int(query["tail"]):]
            ts = _iso(job.started)
            data = "".join(f"data: {json.dumps({'data': line, 'timestamp': ts})}\n\n" for line in lines).encode()
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return None
        return self._send(h, 200, job.info(self.url))

    def _preupload(self, h, repo_id: str, body: bytes) -> None:
        if not self._auth(h, write=True) or (repo := self._repo(h, repo_id)) is None:
            return
        files = []
        for f in json.loads(body)["files"]:
            have = repo.files.get(f["path"])
            files.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                          "oid": git_oid(have) if have is not None else None})
        self._send(h, 200, {"files": files, "commitOid": repo.sha})

    def _commit(self, h, repo_id: str, body: bytes) -> None:
        if not self._auth(h, write=True) or (repo := self._repo(h, repo_id)) is None:
            return
        adds, deletes, summary = {}, [], ""
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value["summary"]
            elif key == "file":
                assert value["encoding"] == "base64"
                adds[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deletes.append(value["path"])
            else:
                return self._send(h, 400, {"error": f"fake hub: unsupported commit item {key}"})
        sha = repo.commit(summary, adds, deletes)
        self._send(h, 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{sha}", "commitOid": sha})

    def _tree(self, h, repo_id: str, revision: str, prefix: str) -> None:
        if (found := self._readable(h, repo_id, revision)) is None:
            return
        entries, folders = [], set()
        for p, data in sorted(found[2].items()):
            if prefix and not p.startswith(prefix.rstrip("/") + "/"):
                continue
            parts = p.split("/")
            for i in range(1, len(parts)):
                folders.add("/".join(parts[:i]))
            entries.append({"type": "file", "path": p, "size": len(data), "oid": git_oid(data)})
        entries += [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)
                    if not prefix or f.startswith(prefix.rstrip("/") + "/")]
        self._send(h, 200, entries)


# ---- pytest fixtures --------------------------------------------------------------------------

import pytest  # noqa: E402


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A running FakeHub; jobs (subprocesses, via HF_ENDPOINT) and in-process calls both reach it."""
    from huggingface_hub import constants

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no cached login of this machine's user
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield hub


def files_containing(root, needle: str) -> list[str]:
    """Every file under `root` whose bytes contain `needle` (the token-leak check)."""
    from pathlib import Path

    hits = []
    for p in Path(root).rglob("*"):
        if p.is_file():
            try:
                if needle.encode() in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits
