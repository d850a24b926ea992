#!/usr/bin/env bash
# Install everything mlpgen needs on a fresh Debian machine: Graphviz's dot and
# Chromium (for the explorer's browser tests), then the package with all its
# extras and the test tools (torch pinned to the CPU wheel, torch==2.13.0), as
# an editable install of this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
# Graphviz draws the diagrams; Chromium and its driver run the explorer's browser tests
packages=""
command -v dot >/dev/null 2>&1 || packages="graphviz"
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || packages="$packages chromium chromium-driver"
if [ -n "$packages" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  fi
fi
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
# under pyenv, make the new `mlpgen` command visible on PATH at once
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
