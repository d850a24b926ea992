#!/usr/bin/env bash
# Set up (scripts/setup.sh), run the whole test suite, then check the package
# as users install it (scripts/check-package.sh: the wheel in a fresh virtual
# environment, used from outside the source tree). Arguments go to pytest;
# with arguments only pytest runs.
#
#   bash scripts/test.sh                                  # what CI runs
#   bash scripts/test.sh -m "not slow"                    # the quick part
#   bash scripts/test.sh tests/test_fuzz.py --hypothesis-profile=long
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pytest -q "$@"
if [ "$#" = 0 ]; then
  bash scripts/check-package.sh
fi
