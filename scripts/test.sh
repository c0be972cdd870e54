#!/usr/bin/env bash
# Runs every Sextant test on a fresh Debian machine.
#
# It first installs and starts what the tests need:
#   - PostgreSQL (Debian's package), a running cluster and a `sextant` role;
#   - a Python virtualenv in .venv with the OpenTelemetry Python SDK;
#   - Chromium and chromedriver (Debian's packages) for the UI tests;
#   - busybox-static and docker-registry (Debian's packages) for the agent's
#     Docker tests: the test kit builds FROM-scratch images around the static
#     busybox and starts its own registry on 127.0.0.1 (the Debian
#     docker-registry service is not used); Docker itself must be running;
#   - openssh-server (Debian's package) for the orchestrator's SSH tests, which
#     run their own /usr/sbin/sshd in inetd mode on 127.0.0.1 (port 0); the
#     package's system service is kept from starting;
#   - prometheus (Debian's package) for the canary analysis test, which runs its
#     own prometheus on 127.0.0.1 scraping the test, and promtool for the alert
#     rules; prometheus-alertmanager for amtool (deploy/ checks); their system
#     services are kept from starting; docker-compose (Debian's, v1) to
#     validate deploy/compose; kubectl (kubernetes-client) for `kubectl
#     kustomize` and systemd-analyze for deploy/kubernetes and deploy/systemd;
#   - iproute2 (`ip netns`, veth) for the agent test across a network
#     namespace; the tests run as root (CI does), as `ip netns` needs;
#   - bsdutils (util-linux `script`, essential on Debian) for the CLI's
#     progress-bar tests on a pseudo-terminal;
# then runs `cargo test --workspace`. Extra arguments go to cargo test.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '==> %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

apt_install() {
    log "installing Debian packages: $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Debian packages --------------------------------------------------------
missing=()
command -v pg_lsclusters >/dev/null || missing+=(postgresql)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# The Docker test images need a *static* /bin/busybox (FROM scratch has no libc);
# Debian's plain busybox package also installs /bin/busybox, dynamically linked.
{ test -x /bin/busybox && dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; } ||
    missing+=(busybox-static)
command -v docker-registry >/dev/null || missing+=(docker-registry)
test -x /usr/sbin/sshd || missing+=(openssh-server)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v systemd-analyze >/dev/null || missing+=(systemd)
# `ip netns` for the agent that dials the orchestrator from a network
# namespace of its own (orchestrator/tests/agents_docker.rs).
command -v ip >/dev/null || missing+=(iproute2)
# util-linux `script` gives the CLI's progress-bar tests a pseudo-terminal.
command -v script >/dev/null || missing+=(bsdutils)
if [ ${#missing[@]} -gt 0 ]; then
    # The SSH and Prometheus tests start their own sshd and prometheus on
    # port 0; no test uses a system service, so keep apt from starting one
    # (policy-rc.d answering 101 = forbidden).
    if [[ " ${missing[*]} " == *" openssh-server "* || " ${missing[*]} " == *" prometheus"* ]] &&
        [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
        trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt_install "${missing[@]}"
    if trap -p EXIT | grep -q policy-rc.d; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi

# --- Docker -----------------------------------------------------------------
# The agent's tests drive the local Docker engine. Start it if it is installed
# but not running; fail with a clear message if it is missing.
if ! docker info >/dev/null 2>&1; then
    if command -v dockerd >/dev/null; then
        log "starting the Docker engine"
        "${SUDO[@]}" service docker start >/dev/null 2>&1 ||
            { "${SUDO[@]}" sh -c 'nohup dockerd >/var/log/sextant-dockerd.log 2>&1 &'; }
        for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
    fi
    docker info >/dev/null 2>&1 || {
        echo "Docker is not reachable (docker info failed): the agent's tests need a running engine" >&2
        exit 1
    }
fi

# --- PostgreSQL -------------------------------------------------------------
cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ]; then
    log "creating a PostgreSQL cluster"
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    "${SUDO[@]}" pg_createcluster "$version" main
    cluster="$version main"
fi
read -r pg_version pg_name <<<"$cluster"
if ! pg_lsclusters --no-header | awk -v v="$pg_version" -v n="$pg_name" '$1==v && $2==n {print $4}' | grep -q online; then
    log "starting PostgreSQL $pg_version/$pg_name"
    "${SUDO[@]}" pg_ctlcluster "$pg_version" "$pg_name" start
fi
pg_port=$(pg_lsclusters --no-header | awk -v v="$pg_version" -v n="$pg_name" '$1==v && $2==n {print $3}')
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
for _ in $(seq 1 30); do
    as_postgres "psql -p $pg_port -tAc 'select 1'" >/dev/null 2>&1 && break
    sleep 1
done
if [ "$(as_postgres "psql -p $pg_port -tAc \"select 1 from pg_roles where rolname = 'sextant'\"")" != "1" ]; then
    log "creating PostgreSQL role sextant"
    as_postgres "psql -p $pg_port -qc \"create role sextant login createdb password 'sextant'\""
fi
# A role left by something else may have another password: the tests need this one.
as_postgres "psql -p $pg_port -qc \"alter role sextant login createdb password 'sextant'\""
export SEXTANT_TEST_DATABASE_URL="postgres://sextant:sextant@127.0.0.1:${pg_port}/postgres"

# --- Python OTLP clients ----------------------------------------------------
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if ! cmp -s tests/python/requirements.txt "$VENV/.sextant-requirements"; then
    log "installing Python packages"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
    cp tests/python/requirements.txt "$VENV/.sextant-requirements"
fi
export SEXTANT_TEST_PYTHON="$VENV/bin/python"

# --- Tests ------------------------------------------------------------------
# The end-to-end tests start the real `sextant` binary.
log "cargo build --bin sextant"
cargo build --locked --bin sextant
log "cargo test (PostgreSQL on port $pg_port)"
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in -p | --package | -p=* | --package=*) scope=() ;; esac
done
exec cargo test "${scope[@]}" --locked "$@"
