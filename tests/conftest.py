"""Shared fixtures: the repository layout and a compiled-spec cache."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Hypothesis profiles. "default" (what CI runs) is derandomised: the examples
# are a fixed function of each test, so a run cannot turn red by chance; and
# it keeps no example database. "long" (`pytest --hypothesis-profile=long`)
# draws fresh random examples, many more of them: property tests hundreds,
# the fuzzer 2,000 mutated specs. Each example compiles (and some run) a
# network, so no per-example deadline.
settings.register_profile(
    "default", max_examples=40, deadline=None, derandomize=True, database=None
)
settings.register_profile("long", max_examples=300, deadline=None)
settings.load_profile("default")


def hypothesis_profile() -> str:
    """The profile in force: "default", or the one --hypothesis-profile chose."""
    return getattr(settings, "_current_profile", None) or "default"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``dot`` need Graphviz's dot: skipped, with the reason, without it."""
    if shutil.which("dot") is not None:
        return
    skip = pytest.mark.skip(
        reason="needs Graphviz's dot, which is not installed (scripts/setup.sh installs it)"
    )
    for item in items:
        if "dot" in item.keywords:
            item.add_marker(skip)


ROOT = Path(__file__).resolve().parent.parent
# a 12-layer sigmoid chain, 16 -> 11x32 -> 4, ten blocks alike: the diagrams at scale
CHAIN12 = ROOT / "tests" / "specs" / "chain12.yaml"
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml"))


def load_module(path: Path, name: str | None = None):
    """Import a generated file as a module, without touching sys.path."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def compiled(tmp_path_factory):
    """compiled(spec_path) -> the folder it compiles to (once per session)."""
    from mlpgen.compiler import compile_spec

    root = tmp_path_factory.mktemp("compiled")
    done: dict[Path, Path] = {}

    def get(spec: Path) -> Path:
        if spec not in done:
            done[spec] = compile_spec(spec, root)
        return done[spec]

    return get


def training_forward(nb, x, dropout_seed: int = 1):
    """params -> nb.forward(...) on ``x`` in training mode, with the same dropout
    masks at every call and fresh buffers: a deterministic, smooth function of
    the parameters, for finite differences."""
    arguments = inspect.signature(nb.forward).parameters

    def run(params):
        head = (params, nb.init_buffers()) if "buffers" in arguments else (params,)
        options = {}
        if "training" in arguments:
            options["training"] = True
        if "dropout_rng" in arguments:
            options["dropout_rng"] = np.random.default_rng(dropout_seed)
        return nb.forward(*head, x, **options)

    return run
