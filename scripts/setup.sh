#!/usr/bin/env bash
# Set up lucid_widgets on a fresh machine: torch, the JS build, the package (+ test tools).
#   bash scripts/setup.sh          # the package and JupyterLab: what the main job needs
#   bash scripts/setup.sh --test   # plus the TypeScript typecheck, the test extra and a headless
#                                  # Chromium for the e2e tests (.ci/run calls this)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# torch first, exactly this pair (a CPU-capable build that also runs on CUDA)
"$PYTHON" -m pip install --quiet torch==2.14.1 torchvision==0.29.1

# the widget's front end: TypeScript -> lucid_widgets/static/ (never committed)
if [ -f package.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
  npm run --silent build
fi

if [ "${1:-}" = "--test" ]; then
  if [ -f package.json ]; then
    npm run --silent typecheck # tsc --noEmit: fails the set-up (and CI) on a type error
  fi
  "$PYTHON" -m pip install --quiet -e ".[test]"
  if ! [ -x /usr/bin/chromium ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "setup: /usr/bin/chromium is missing; the e2e tests skip (and fail under CI=true)" >&2
    fi
  fi
else
  "$PYTHON" -m pip install --quiet -e ".[notebook]"
fi
