#!/usr/bin/env bash
# Set up everything onshi needs on a fresh Debian machine: system packages (when root and
# apt-get is available), a virtualenv at .venv/ in the repository root, and the project in it.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(pcscd vsmartcard-vpcd libpcsclite-dev pcsc-tools mosquitto tshark gcc python3-dev iproute2 nginx-light wrk openssl opensc)

missing=()
for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "onshi setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "onshi setup: missing Debian packages (${missing[*]}); install them as root:" >&2
        echo "  apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
echo "onshi setup: ready (.venv/bin/onshi)"
