#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: lint, then pytest (slow and browser tests
# included). Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check . || { echo "run: .venv/bin/ruff format ." >&2; exit 1; }
echo "==> pytest"
# pytest exits 5 when it collected no test: that is a failure here, as any non-zero code is.
exec .venv/bin/python -m pytest "$@"
