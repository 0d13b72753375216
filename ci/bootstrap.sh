#!/usr/bin/env bash
# Create .venv and install opsgate with what its tests and benchmarks need.
# Works on a fresh Debian 12 with python3: installs python3-venv through apt-get
# when the venv module is missing (as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
EXTRAS="${OPSGATE_EXTRAS:-test,bench}"

if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "bootstrap: python3-venv missing; installing it with apt-get" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${EXTRAS}]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import opsgate, pytest_jsonreport, pytest_timeout" \
    || { echo "bootstrap: install failed" >&2; exit 1; }
touch .venv/.installed
