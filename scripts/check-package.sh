#!/usr/bin/env bash
# Install mlpgen as a user does and use it from outside the source tree:
# build the wheel and the sdist, check what they carry, install the wheel into
# a fresh virtual environment (its own site-packages only; torch from the
# pinned CPU wheel), then run compile, check, crosstest and run there from a
# scratch folder, and one command whose optional package (matplotlib) is left
# out on purpose, which must exit 4 naming the extra.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
scratch=$(mktemp -d "${TMPDIR:-/tmp}/mlpgen-package.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
unset PYTHONPATH  # nothing may come from the source tree

echo "== build the wheel and the sdist"
python3 -m build --outdir "$scratch/dist" . >"$scratch/build.log" 2>&1 ||
  { cat "$scratch/build.log"; exit 1; }
python3 scripts/check_dist.py "$scratch/dist"

echo "== install the wheel into a fresh virtual environment"
python3 -m venv "$scratch/venv"
venv="$scratch/venv/bin"
"$venv/python" -m pip install -q torch==2.13.0
wheel=$(ls "$scratch"/dist/mlpgen-*.whl)
"$venv/python" -m pip install -q "$wheel[torch,run]"

echo "== use it from a folder outside the source tree"
mkdir -p "$scratch/work/data"
cp specs/xor.yaml specs/flowers_csv.yaml "$scratch/work/"
cp specs/data/flowers.csv "$scratch/work/data/"
cd "$scratch/work"
installed=$("$venv/python" -c 'import mlpgen, os; print(os.path.dirname(mlpgen.__file__))')
case "$installed" in "$scratch/venv/"*) ;; *) echo "mlpgen imported from $installed"; exit 1 ;; esac
"$venv/mlpgen" --version
"$venv/mlpgen" check xor.yaml flowers_csv.yaml >/dev/null
"$venv/mlpgen" compile xor.yaml flowers_csv.yaml -o out
"$venv/mlpgen" crosstest xor.yaml --epochs 100 | tail -1
"$venv/mlpgen" crosstest flowers_csv.yaml --epochs 5 | tail -1
"$venv/mlpgen" run xor.yaml --epochs 20 >/dev/null
"$venv/python" out/xor/numpy_backprop.py --epochs 5 --quiet
set +e
err=$("$venv/mlpgen" crosstest xor.yaml --epochs 5 --plot loss.png 2>&1 >/dev/null)
code=$?
set -e
expected="error: mlpgen crosstest needs matplotlib: pip install 'mlpgen[plot]'"
if [ "$code" != 4 ] || [ "$err" != "$expected" ]; then
  echo "without matplotlib: exit $code, said: $err"; exit 1
fi
left=$(ls -A)
if [ "$left" != "$(printf 'data\nflowers_csv.yaml\nout\nxor.yaml')" ]; then
  echo "unexpected files in the working folder:"; echo "$left"; exit 1
fi
echo "package check passed: wheel installed in a fresh venv, commands run from $scratch/work"
