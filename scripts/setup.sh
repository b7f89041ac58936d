#!/usr/bin/env bash
# Install everything ktmu needs on a fresh machine: the Fashion-MNIST Debian package and a
# virtual environment (.venv) with ktmu and its pinned dependencies. Safe to run again.
# Usage: scripts/setup.sh [test]   ("test" also installs the test dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."

FASHION=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$FASHION" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Fashion-MNIST (dataset-fashion-mnist) from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  else
    echo "[setup] Fashion-MNIST is missing and installing it needs root. Run:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist" >&2
    echo "then run this command again." >&2
    exit 1
  fi
fi

# The test suite opens ktmu report's page in a real browser (tests/test_report.py): Debian's chromium.
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "[setup] installing chromium (headless browser for the report test) from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else
    echo "[setup] chromium (the report test's headless browser) is missing and installing it needs root. Run:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2
    echo "then run this command again." >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
stamp=".venv/.ktmu-installed${extra}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing ktmu${extra} into .venv (torch 2.14.1 / torchvision 0.29.1 come from this machine's disk)"
  .venv/bin/pip install -q --disable-pip-version-check -e ".${extra}" 2>&1 | grep -v "is ignored: it is neither" || true
  .venv/bin/python -c "import ktmu, torch, torchvision, open_clip" >/dev/null
  touch "$stamp"
fi
