#!/usr/bin/env bash
# Create ./.venv and install carqa into it. Idempotent: re-running only installs what changed.
#
#   scripts/setup.sh          # runtime install
#   scripts/setup.sh --dev    # plus test/lint tools, the [scale] extra (Ray, Milvus Lite: ~1.5 min
#                             # and ~0.5 GB more; CARQA_SKIP_SCALE=1 leaves it out and its tests
#                             # skip) and the Chromium for browser tests
#
# Torch is installed first, as the CPU build: a plain `pip install torch` (or letting
# sentence-transformers pull it) resolves a multi-GB CUDA build. On machines whose pip
# cannot find a CPU wheel by default, point CARQA_TORCH_INDEX_URL at PyTorch's CPU wheel index.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${CARQA_VENV:-.venv}
TORCH_VERSION=${CARQA_TORCH_VERSION:-2.13.0}
extras=""
dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1; extras="[dev,scale]" ;;
    *) echo "usage: scripts/setup.sh [--dev]" >&2; exit 2 ;;
  esac
done

if [ "$dev" = 1 ] && [ "${CARQA_SKIP_SCALE:-0}" = 1 ]; then
  extras="[dev]"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet --upgrade pip

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "==> installing torch $TORCH_VERSION (CPU build; a large download, this takes a while)"
  if [ -n "${CARQA_TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" install --quiet "torch==$TORCH_VERSION" --index-url "$CARQA_TORCH_INDEX_URL"
  else
    "${PIP[@]}" install --quiet "torch==$TORCH_VERSION"
  fi
fi

echo "==> installing carqa$extras"
# pip's and setuptools' own notices (setuptools announces every editable install with a
# meta path finder) go to a log, shown whole if the install fails.
log="$VENV/install.log"
if ! "${PIP[@]}" install --quiet -e ".$extras" >"$log" 2>&1; then
  cat "$log" >&2
  echo "!! installing carqa failed (log: $log)" >&2
  exit 1
fi

if [ "$dev" = 1 ] && [ "${CARQA_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian chromium for the browser tests"
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "!! chromium not found: browser tests will be skipped (install Debian's chromium)" >&2
  fi
fi
echo "==> done: $VENV/bin/carqa --help"
