# AceLoRA on a Hugging Face Space (Docker SDK) or any NVIDIA machine.
# Spaces run the container as UID 1000 with the GPU driver on the host; the CUDA runtime comes
# inside PyTorch's cu12x wheels, so a slim Python base is enough.
FROM python:3.11-slim-bookworm

# tini as PID 1: training, labelling and upload jobs are detached children of the dashboard;
# when the dashboard restarts they are re-parented to PID 1, which must reap them (no zombies).
# nginx-light: with APP_PASSWORD set, scripts/serve.py puts it in front of Streamlit so every
# route (uploads and /media included, which Streamlit's page gate never sees) needs the password.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini libsndfile1 nginx-light \
    && rm -rf /var/lib/apt/lists/*

# CUDA torch first, from PyTorch's own index (PyPI's default wheel is not the one we pin the CUDA
# build of); then the pinned requirements, which find torch already satisfied.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "$TORCH_INDEX" "$(grep -E '^torch==' requirements.txt)" \
    && pip install --no-cache-dir -r requirements.txt

# The Space's user: UID 1000 owns /app, the workspace when no storage bucket is mounted at /data.
RUN useradd --create-home --uid 1000 user && chown user:user /app
USER 1000
ENV HOME=/home/user \
    HF_HUB_DISABLE_TELEMETRY=1
COPY --chown=1000:1000 . /app

EXPOSE 8501
ENTRYPOINT ["/usr/bin/tini", "--"]
# headless: no browser on a server; fileWatcherType none: the app never reloads its own source, and
# watching a workspace of audio and checkpoints would cost inotify watches; maxUploadSize in MB for
# songs (the same as .streamlit/config.toml; serve.py gives nginx the same limit); XSRF off because
# the Hub shows the Space in an iframe where Streamlit's XSRF cookie is blocked, which breaks every
# upload (APP_PASSWORD, checked by nginx on every route, is the access control instead).
CMD ["python", "scripts/serve.py", "streamlit", "run", "streamlit_app.py", \
     "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true", \
     "--server.fileWatcherType=none", "--server.maxUploadSize=2048", \
     "--server.enableXsrfProtection=false", "--browser.gatherUsageStats=false"]
