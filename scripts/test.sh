#!/usr/bin/env bash
# Runs every test, on SQLite and PostgreSQL. Installs or starts what the tests need first:
# the C toolchain packages, Chromium for the page test, a reachable PostgreSQL on
# 127.0.0.1:5432 and the Python oracles (icalendar; aiosmtpd and http_ece for delivery) in
# ./.venv. Extra arguments go to cargo nextest (or cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
for pkg in pkg-config libssl-dev python3-venv chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_packages+=("$pkg")
done
if ((${#need_packages[@]})); then
    echo "installing system packages: ${need_packages[*]}"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq "${need_packages[@]}"
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq "${need_packages[@]}"
    fi
fi

pg_host=127.0.0.1
pg_port=5432
if ! pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null; then
    echo "PostgreSQL is not answering on $pg_host:$pg_port; trying to start the local cluster"
    if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
        for _ in $(seq 1 30); do
            pg_isready -q -h "$pg_host" -p "$pg_port" && break
            sleep 1
        done
    fi
fi
if ! pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null; then
    echo "error: PostgreSQL is not reachable on $pg_host:$pg_port." >&2
    echo "Start it (for example: pg_ctlcluster --skip-systemctl-redirect 15 main start)," >&2
    echo "or point ROSE_EVENTS_TEST_PG at a server whose user may create databases." >&2
    exit 1
fi

oracle_modules='import icalendar, recurring_ical_events, aiosmtpd, http_ece, websockets'
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c "$oracle_modules" 2>/dev/null; then
    echo "installing the Python test oracles into .venv"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/oracle/requirements.txt
fi
export ROSE_EVENTS_PYTHON="$PWD/.venv/bin/python"

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --lib --bins --tests --no-fail-fast "$@"
else
    cargo test --lib --bins --tests --no-fail-fast "$@"
fi
