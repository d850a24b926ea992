#!/usr/bin/env bash
# Install everything mlpgen needs on a fresh Debian machine: Graphviz's dot,
# then the package with all its extras and the test tools (torch pinned to the
# CPU wheel, torch==2.13.0), as an editable install of this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  fi
fi
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
# under pyenv, make the new `mlpgen` command visible on PATH at once
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
