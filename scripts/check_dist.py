"""Check what the wheel and the sdist in DIST carry (run by check-package.sh).

    python scripts/check_dist.py DIST

The wheel must hold the package with its templates; the sdist everything the
test suite and the documentation need: every file git tracks under mlpgen/,
specs/, tests/, docs/, generated/, scripts/ and bench/, and the top-level
files. Prints what it checked, exits 1 with the missing files otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDIST_FOLDERS = ("mlpgen", "specs", "tests", "docs", "generated", "scripts", "bench")
SDIST_FILES = ("README.md", "pyproject.toml", "MANIFEST.in", ".ci/run")


def tracked() -> list[str]:
    """The files git tracks, or every file when this is not a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        return [name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]


def main(dist: Path) -> int:
    [wheel] = dist.glob("mlpgen-*.whl")
    [sdist] = dist.glob("mlpgen-*.tar.gz")
    files = tracked()
    package = [f for f in files if f.startswith("mlpgen/")]
    templates = [f for f in package if f.startswith("mlpgen/templates/")]
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
    missing = [f for f in package if f not in in_wheel]
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        in_sdist = {name[len(top) + 1 :] for name in tf.getnames()}
    wanted = [f for f in files if f.split("/")[0] in SDIST_FOLDERS or f in SDIST_FILES]
    missing += [f"{sdist.name}: {f}" for f in wanted if f not in in_sdist]
    if not templates:
        missing.append("no templates tracked under mlpgen/templates")
    if missing:
        print("missing from the distributions:", *missing, sep="\n  ", file=sys.stderr)
        return 1
    print(
        f"{wheel.name}: {len(package)} package files, {len(templates)} templates; "
        f"{sdist.name}: {len(wanted)} files (specs, tests, docs, gallery)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
