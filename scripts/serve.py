"""Container entry: run the dashboard, behind nginx with HTTP basic auth when APP_PASSWORD is set.

    python scripts/serve.py streamlit run streamlit_app.py --server.port=8501 [more streamlit flags]

Without APP_PASSWORD this simply becomes the streamlit command. With it, Streamlit listens on
127.0.0.1 only (public port + 1) and nginx (Debian's nginx-light) takes the public port, asking for
the password (user name `acelora`) on every route before anything reaches Streamlit: pages, the websocket
(/_stcore/stream), uploads (/_stcore/upload_file), /media and static files. Streamlit's own page
gate covers pages only; uploads and media are plain HTTP routes it never sees.

nginx also limits wrong passwords: every refused request goes through a rate limit (per client, and
for all clients together), so guessing costs seconds per try instead of milliseconds. Requests with
the right password are never slowed. Streamlit is told the request came through the proxy by a
random per-start header value, so its page gate does not ask a second time.

The password reaches nginx only as a salted SHA-512 crypt hash in a file readable by this user,
in /dev/shm (memory) when that exists; the file is removed on exit.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROXY_HEADER = "X-AceLoRA-Proxy-Auth"  # set by nginx on every proxied request; see ui/gate.py
NONCE_ENV = "ACELORA_PROXY_NONCE"
USER = "acelora"  # basic auth needs a user name; the browser's prompt says which (the realm)
FAIL_RATE_PER_CLIENT = "12r/m"  # wrong passwords: one every 5 s per client once the burst is used
FAIL_RATE_ALL = "60r/m"  # and one a second for everyone together (spoofed client addresses)


def flag(args: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a streamlit command line (last one wins)."""
    value = None
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
        elif a == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def upload_limit_mb(args: list[str]) -> int:
    """Streamlit's server.maxUploadSize: the command line, else .streamlit/config.toml, else 200."""
    if (v := flag(args, "server.maxUploadSize")) is not None:
        return int(v)
    cfg = REPO / ".streamlit" / "config.toml"
    if cfg.is_file():
        return int(tomllib.loads(cfg.read_text()).get("server", {}).get("maxUploadSize", 200))
    return 200


def password_hash(password: str) -> str:
    """A crypt(3) SHA-512 hash nginx checks through libcrypt (never the password itself on disk)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # noqa: PLC0415 - Python 3.11 (the image's) has it; it wraps the system libcrypt

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def nginx_conf(run: Path, public_port: int, app_port: int, nonce: str, upload_mb: int, user: str = "") -> str:
    temp = "\n".join(f"    {k}_temp_path {run / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 1;
daemon off;
pid {run / "nginx.pid"};
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    # the same limit as Streamlit's server.maxUploadSize; bodies stream through, not spooled to disk
    client_max_body_size {upload_mb}m;
    proxy_request_buffering off;
    proxy_buffering off;
    # behind the Hub's proxy: the client is the last address it appended
    real_ip_header X-Forwarded-For;
    set_real_ip_from 0.0.0.0/0;
    limit_req_zone $binary_remote_addr zone=wrong_password:1m rate={FAIL_RATE_PER_CLIENT};
    limit_req_zone $server_port zone=wrong_password_all:64k rate={FAIL_RATE_ALL};
    limit_req_status 429;
    limit_req_log_level warn;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    server {{
        listen {public_port};
        auth_basic "AceLoRA (user {USER})";
        auth_basic_user_file {run / "htpasswd"};
        error_page 401 @wrong_password;
        location = /healthz {{ auth_basic off; return 200 "ok\\n"; }}
        location / {{
            proxy_pass http://127.0.0.1:{app_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header Authorization "";
            proxy_set_header {PROXY_HEADER} {nonce};
            proxy_read_timeout 1d;
            proxy_send_timeout 1d;
        }}
        # no `return` here: it would answer in the rewrite phase, before limit_req ever runs;
        # try_files answers in the content phase, with a 401 for any method (a static file would get
        # a 405 for PUT)
        location @wrong_password {{
            auth_basic off;
            limit_req zone=wrong_password burst=5 nodelay;
            limit_req zone=wrong_password_all burst=20 nodelay;
            root {run};
            try_files /.no-such-file =401;
        }}
    }}
}}
"""


def app_command(args: list[str], port: int) -> list[str]:
    kept = [a for a in args if not a.startswith(("--server.port", "--server.address"))]
    return kept + [f"--server.port={port}", "--server.address=127.0.0.1"]


def main(argv: list[str]) -> int:
    args = argv or ["streamlit", "run", "streamlit_app.py"]
    password = os.environ.get("APP_PASSWORD")
    if not password:
        os.execvp(args[0], args)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        print("APP_PASSWORD is set but nginx is not installed: refusing to serve the dashboard unprotected. "
              "Install nginx-light (see the Dockerfile).", file=sys.stderr)
        return 1
    public = int(flag(args, "server.port") or 8501)
    internal = int(os.environ.get("ACELORA_APP_PORT") or public + 1)
    shm = Path("/dev/shm")
    run = Path(tempfile.mkdtemp(prefix="acelora-proxy-", dir=shm if os.access(shm, os.W_OK) else None))
    nonce = secrets.token_hex(16)
    htpasswd = run / "htpasswd"
    htpasswd.touch(mode=0o600)
    htpasswd.write_text(f"{USER}:{password_hash(password)}\n")
    user = ""
    if os.geteuid() == 0:  # started as root (not in the image, which runs as UID 1000): workers drop to nobody
        import grp  # noqa: PLC0415
        import pwd  # noqa: PLC0415

        nobody = pwd.getpwnam("nobody")
        os.chown(htpasswd, nobody.pw_uid, nobody.pw_gid)
        os.chmod(run, 0o711)
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"
    (run / "nginx.conf").write_text(nginx_conf(run, public, internal, nonce, upload_limit_mb(args), user))
    env = {**os.environ, NONCE_ENV: nonce}
    procs = [subprocess.Popen(app_command(args, internal), env=env),
             subprocess.Popen([nginx, "-p", str(run), "-c", str(run / "nginx.conf")])]

    def stop(*_):
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(p.poll() is None for p in procs):  # one of them ending ends the service
            time.sleep(0.5)
    finally:
        stop()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(run, ignore_errors=True)
    return next((p.returncode for p in procs if p.returncode), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
