"""APP_PASSWORD on a public Space: scripts/serve.py puts nginx (Debian's nginx-light) in front of
`streamlit run`, and every route needs the password. Each route is tried by a client that never
authenticated; the websocket, uploads and pages still work with the password; wrong passwords are
rate limited; the upload limit is the same in config.toml, the Dockerfile and nginx."""
from __future__ import annotations

import base64
import concurrent.futures
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib

import pytest

from locations import REPO

sys.path.insert(0, str(REPO / "scripts"))
import serve  # noqa: E402

PASSWORD = "correct horse battery"
ROUTES = [  # (method, path): every kind of route Streamlit serves
    ("GET", "/"),
    ("GET", "/train"),
    ("GET", "/_stcore/health"),
    ("GET", "/_stcore/host-config"),
    ("GET", "/static/js/index.js"),
    ("GET", "/media/0123456789abcdef0123456789abcdef0123456789abcdef01234567.wav"),
    ("PUT", "/_stcore/upload_file/some-session/some-file"),
    ("DELETE", "/_stcore/upload_file/some-session/some-file"),
    ("GET", "/app/static/x.png"),
    ("GET", "/component/x/index.html"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auth(user: str = serve.USER, password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def request(port: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def websocket_status(port: int, headers: dict | None = None) -> int:
    key = base64.b64encode(os.urandom(16)).decode()
    return request(port, "GET", "/_stcore/stream", {"Upgrade": "websocket", "Connection": "Upgrade",
                                                    "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13",
                                                    **(headers or {})})[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        pytest.fail("nginx is missing: scripts/setup_env.sh requirements-dev.txt installs it as root (apt-get install nginx-light)")
    home = tmp_path_factory.mktemp("proxy_home")
    port = free_port()
    env = {**os.environ, "APP_PASSWORD": PASSWORD, "ACELORA_HOME": str(home), "ACELORA_APP_PORT": str(free_port()),
           "ACELORA_MODEL": "tests/not-the-demo-model"}
    env.pop("SPACE_ID", None)
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "serve.py"), sys.executable, "-m", "streamlit",
                             "run", "streamlit_app.py", f"--server.port={port}", "--server.headless=true",
                             "--server.fileWatcherType=none", "--browser.gatherUsageStats=false"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            if request(port, "GET", "/_stcore/health", auth())[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.3)
    else:
        proc.terminate()
        pytest.fail("the proxied dashboard did not come up in 60 s")
    yield port
    proc.terminate()
    proc.wait(timeout=30)


def test_every_route_refuses_a_client_that_never_authenticated(served):
    for method, path in ROUTES:
        status, headers, body = request(served, method, path)
        assert status in (401, 429), (method, path, status)
        assert b"Streamlit" not in body and b"<script" not in body, (method, path)
    assert websocket_status(served) in (401, 429)


def test_a_large_unauthenticated_upload_is_refused_before_streamlit_reads_it(served):
    t0 = time.monotonic()
    status, _, _ = request(served, "PUT", "/_stcore/upload_file/s/f", {"Content-Type": "application/octet-stream"},
                           b"\0" * (50 << 20))
    assert status in (401, 429) and time.monotonic() - t0 < 20


def test_with_the_password_pages_websocket_and_uploads_reach_streamlit(served):
    status, headers, body = request(served, "GET", "/", auth())
    assert status == 200 and b"<div id=\"root\">" in body or b"streamlit" in body.lower()
    assert request(served, "GET", "/_stcore/health", auth())[0] == 200
    assert websocket_status(served, auth()) == 101  # the app's live channel works through the proxy
    # an upload gets to Streamlit's own handler, which answers for a session it does not know
    status, _, _ = request(served, "PUT", "/_stcore/upload_file/no-such-session/f", auth(), b"x" * 1024)
    assert status not in (401, 429, 502) and status < 500
    assert request(served, "GET", "/healthz")[0] == 200  # nginx's own liveness answer, no app route


def test_wrong_passwords_are_rate_limited_and_the_right_one_still_works(served):
    def wrong(i: int) -> int:
        return request(served, "GET", "/", auth(password=f"guess-{i}"))[0]

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(wrong, range(30)))
    assert statuses.count(429) >= 10, statuses  # most guesses are refused without being checked
    assert all(s in (401, 429) for s in statuses)
    assert request(served, "GET", "/", auth())[0] == 200  # the right password is never slowed down
    assert time.monotonic() - t0 < 30


def test_upload_limits_agree_between_config_dockerfile_and_nginx():
    toml = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    docker = (REPO / "Dockerfile").read_text()
    cmd = docker[docker.index("CMD ["):]
    assert f"--server.maxUploadSize={toml}" in cmd
    args = [a.strip(' ",\\[]') for a in cmd.split(",")]
    assert serve.upload_limit_mb(args) == toml == serve.upload_limit_mb(["streamlit", "run", "x.py"])
    assert f"client_max_body_size {toml}m;" in serve.nginx_conf(REPO, 1, 2, "n", serve.upload_limit_mb(args))
    assert '"scripts/serve.py"' in cmd and "nginx-light" in docker
