# syntax=docker/dockerfile:1
# One slim image for every Python component of the tracker: ingest, exporter, api and simulator,
# plus the operator's command `bybit-tracker` (healthcheck, backup, check).
# The component is chosen by the command (`python -m ingest`, ...); docker-compose.yml sets it
# per service and overrides the health check to suit each one.
#
# Base image pinned by tag. For fully reproducible builds pin the digest too, after checking it:
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm   # then FROM python:...@sha256:<digest>
# (the digest is not written here because it could not be verified on the offline build machine).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: turn the project and its dependencies into wheels ---------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for the ingest's scanner (ingest/_scan.c, setup.py), in this stage only: the runtime
# gets the built wheel. The slim image has Python's headers but no compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies change less often than code: a layer of their wheels first keeps rebuilds fast.
COPY pyproject.toml setup.py README.md LICENSE ./
COPY common ./common
COPY ingest ./ingest
COPY exporter ./exporter
COPY api ./api
COPY simulator ./simulator
COPY tracker_tools ./tracker_tools
# tracker_tools/healthcheck/thresholds.yml is a link to this file; the wheel gets its contents.
COPY prometheus/thresholds.yml ./prometheus/thresholds.yml
# api/runbooks is a link to docs/runbooks: the API serves them at /docs/runbooks/ (alerts' runbook_url).
COPY docs/runbooks ./docs/runbooks
RUN pip wheel --wheel-dir /wheels .

# --- runtime: only the installed wheels, no compiler, no source tree, no pip cache ------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# --no-index: the runtime stage installs exactly the wheels built above, never from the network.
# The import fails the build if the wheel came without the C scanner (setup.py's extension is
# optional so that a machine without a compiler can still install the project).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels bybit-options-tracker \
 && python -c "import ingest._scan" \
 && groupadd --system --gid 10001 tracker \
 && useradd --system --uid 10001 --gid tracker --no-create-home --shell /usr/sbin/nologin tracker
WORKDIR /app
USER 10001:10001
# The API listens here by default; the exporter on 9108 and the simulator on 8765 (see compose).
EXPOSE 5001
# The default command serves the API, so the default health check asks the API whether it is live.
# Python's urllib, because slim images have neither curl nor wget.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5001/healthz', timeout=4)"]
CMD ["python", "-m", "api"]
