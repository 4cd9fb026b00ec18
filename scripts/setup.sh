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
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  log "installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
log "ready: $(.venv/bin/python --version), redis-server $(redis-server --version 2>/dev/null | awk '{print $3}' | tr -d v=)"
