#!/usr/bin/env bash
# Set up everything the stack and its tests need, idempotently and quickly when already done:
#   - Debian packages redis-server, redis-sentinel, haproxy, prometheus (+promtool), prometheus-alertmanager (+amtool)
#   - a virtualenv in .venv with the project and its dev dependencies
# Re-running it does nothing that is already done (a stamp records the installed pyproject).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_pkgs+=(redis-sentinel)  # Redis HA (REDIS_SENTINELS)
command -v haproxy >/dev/null 2>&1 || need_pkgs+=(haproxy)  # load balancer of the HA API replicas
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need_pkgs+=(prometheus)
{ command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1; } \
  && command -v amtool >/dev/null 2>&1 || need_pkgs+=(prometheus-alertmanager)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)  # tests read the API's listen backlog
# The ingest's C scanner (ingest/_scan.c) is built by pip below: a compiler, and the C library's headers.
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)

if ((${#need_pkgs[@]})); then
  if [[ ${SKIP_APT:-0} == 1 ]]; then
    log "missing ${need_pkgs[*]} and SKIP_APT=1: tests that need them will be skipped"
  elif ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${need_pkgs[*]} and no apt-get: install them with your package manager"
  else
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    log "installing Debian packages: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # --no-install-recommends: no node-exporter, no services we do not use.
    $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  log "creating virtualenv .venv"
  "$PY" -m venv .venv
fi
# The stamp covers what pip builds from: the project's metadata and the scanner's C source.
stamp=.venv/.installed-$(cat pyproject.toml setup.py ingest/_scan.c | sha256sum | cut -c1-16)
scanner_built() { compgen -G 'ingest/_scan.*.so' >/dev/null; }
if [[ ! -f $stamp ]] || ! scanner_built; then
  log "installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
if ! .venv/bin/python -c 'import ingest._scan' 2>/dev/null; then
  # pip went on without it (setup.py's extension is optional): say so, the tests will too.
  headers=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  log "WARNING: the ingest's C scanner was not built (compiler: $(command -v cc || echo none)," \
      "Python headers: $([[ -f $headers/Python.h ]] && echo "$headers" || echo "missing, e.g. apt-get install python3-dev"))." \
      "The ingest runs its pure-Python path (same results, more CPU)."
fi
log "ready: $(.venv/bin/python --version), redis-server $(redis-server --version 2>/dev/null | awk '{print $3}' | tr -d v=)"
