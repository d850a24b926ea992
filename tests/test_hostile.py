"""Hostile specs: nothing they hold is ever executed, and nothing escapes its place.

A successful injection would create the marker file PWNED in the test's
folder; it must never appear. Rejected specs write nothing at all. Accepted
specs with nasty text (descriptions, file names, CSV headers) compile to
files that parse, run, and hold that text only inside comments and
docstrings. The names that do become code (layer names, the spec name) are
audited against the names the generated files use where a layer's could clash.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import keyword
import os
import subprocess
import sys
import tokenize
import tracemalloc

import numpy as np
import pytest

from mlpgen.compiler import build, compile_spec, output_folder, render, write_atomically
from mlpgen.spec import (
    GENERATED_NAMES,
    NN_MODULE_ATTRIBUTES,
    SpecError,
    class_name,
    parse_spec,
)
from mlpgen.teach import Teaching

from .conftest import ROOT, SPECS, load_module
from .coverage_specs import COVERAGE, XOR_DATA, write

IMPLEMENTATIONS = ("numpy_backprop", "torch_manual", "torch_module")
# the teaching files whose code holds layer names (compile --exercise --ladder)
TEACHING = ("exercise", "torch_autograd", "torch_nn", "torch_optim")
MARKER = "PWNED"


def xor_spec(**changes) -> dict:
    """A small valid spec as data, with top-level ``changes``."""
    spec = {
        "name": "hostile",
        "data": XOR_DATA,
        "model": {
            "layers": [
                {"name": "fc1", "type": "linear", "out": 3},
                {"name": "act1", "type": "tanh"},
                {"name": "fc2", "type": "linear", "out": 1},
            ]
        },
        "loss": {"type": "mse"},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 2},
    }
    spec.update(changes)
    return spec


def with_layer_name(name: str) -> dict:
    spec = xor_spec()
    spec["model"]["layers"][0]["name"] = name
    return spec


def mlpgen(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "mlpgen", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# ------------------------------------------------------------------ rejected


def _payload(folder) -> str:
    return f"__import__('os').system('touch {folder / MARKER}')"


REJECTED_YAML = {
    "object-apply": "!!python/object/apply:os.system ['touch {marker}']\n",
    "object-apply-nested": "name: t\ndescription: !!python/object/apply:os.system ['touch {marker}']\n",
    "object-new": "name: !!python/object/new:os.system ['touch {marker}']\n",
    "python-name": "name: t\ndescription: !!python/name:os.system\n",
    "python-module": "name: !!python/module:os\n",
    "local-tag": "name: !shell touch {marker}\n",
    "alias-bomb": "a: &a ['{marker}', x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{b}: &{b} [{', '.join(['*' + a] * 10)}]\n"
        for a, b in zip("abcdefghi", "bcdefghij")
    ),
    "merge-bomb": "a0: &a0 {k: '{marker}'}\n"
    + "".join(f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}\n" for i in range(1, 60)),
    "self-alias": "a: &a [*a, '{marker}']\n",
    "deep-nesting": "name: " + "[" * 20000 + "]" * 20000 + "\n",
    "deep-mappings": "name: t\nx: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
}


def _rejected_data(folder) -> dict[str, dict]:
    payload = _payload(folder)
    cases = {
        f"name-{i}": xor_spec(name=name)
        for i, name in enumerate(
            [
                "../escape",
                str(folder / "absolute"),
                "a/../../b",
                "xor\n",
                "x\u043er",  # a Cyrillic о
                payload,
                "",
                "a" * 65,
            ]
        )
    }
    cases.update(
        {
            f"layer-{i}": with_layer_name(name)
            for i, name in enumerate(
                [
                    payload,
                    "__import__",
                    "__class__",
                    "x; import os",
                    "a\nimport os",
                    "_modules",
                    "training",
                    "lambda",
                    "None",
                ]
            )
        }
    )
    bad_input = xor_spec()
    bad_input["model"]["layers"][1]["inputs"] = [f"fc1'); {payload} #"]
    cases["input-name"] = bad_input
    bad_gain = xor_spec()
    bad_gain["model"]["layers"][0]["init"] = {
        "scheme": "xavier_uniform",
        "gain": payload,
    }
    cases["init-gain"] = bad_gain
    bad_expr = xor_spec()
    bad_expr["model"]["layers"][1] = {
        "name": "act1",
        "type": "activation",
        "expr": payload,
    }
    cases["activation-expr"] = bad_expr
    cases["description-not-text"] = xor_spec(description={"__import__": payload})
    cases["huge-units"] = xor_spec()
    cases["huge-units"]["model"]["layers"][0]["out"] = 10**13
    cases["huge-epochs"] = xor_spec(
        train={"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 10**9}
    )
    cases["huge-samples"] = xor_spec(
        data={"kind": "random", "n": 10**12, "outputs": 1},
        model={"input": 2, "layers": [{"name": "fc1", "type": "linear", "out": 1}]},
    )
    return cases


@pytest.mark.parametrize("case", sorted(REJECTED_YAML))
def test_rejected_yaml_runs_nothing_and_writes_nothing(case, tmp_path):
    spec = tmp_path / "hostile.yaml"
    spec.write_text(REJECTED_YAML[case].replace("{marker}", str(tmp_path / MARKER)))
    out = tmp_path / "out"
    r = mlpgen("compile", spec, "-o", out, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {spec}: ")
    assert len(r.stderr.splitlines()) < 100
    assert "Traceback" not in r.stderr
    assert not out.exists()
    assert not (tmp_path / MARKER).exists()


def test_rejected_specs_run_nothing_and_write_nothing(tmp_path):
    """Each case on its own, in-process; then all of them in one command."""
    cases = _rejected_data(tmp_path)
    paths = []
    for case, data in cases.items():
        path = tmp_path / f"{case}.json"
        path.write_text(json.dumps(data))
        paths.append(path)
        with pytest.raises(SpecError) as e:
            build(path)
        assert all("\n" not in line for line in e.value.lines()), case
    out = tmp_path / "out"
    r = mlpgen("compile", *paths, "-o", out, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert {line.split(": ")[1] for line in r.stderr.splitlines()} == {
        str(p) for p in paths
    }
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in paths])
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"model": {"input": 2, "layers": [{"type": "linear", "out": 10**13}]}},
        {"data": {"kind": "random", "n": 10**12, "outputs": 1}},
        {
            "data": {"kind": "spiral", "n_per_class": 10**7, "classes": 10**3},
            "loss": {"type": "cross_entropy"},
        },
        {"model": {"layers": [{"type": "linear", "out": 10**5}] * 3}},
        {"train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 10**9}},
    ],
    ids=["units", "samples", "spiral", "parameters", "epochs"],
)
def test_sizes_are_refused_without_allocating(tmp_path, changes):
    """The limits are checked on the numbers alone: a few MB at most."""
    spec = xor_spec(**changes)
    spec["model"].setdefault("input", 2)
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(spec))
    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as e:
            build(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "mlpgen's limit" in str(e.value)
    assert peak < 20 * 2**20


def test_only_keywords_x_private_names_and_module_attributes_are_refused():
    """Any identifier is a layer name except Python keywords, x, names starting
    with _, and torch.nn.Module's public attributes (PyTorch refuses those as
    submodule names)."""
    for name in sorted(
        set(keyword.kwlist) | NN_MODULE_ATTRIBUTES | {"x", "_h", "__init__"}
    ):
        with pytest.raises(SpecError) as e:
            parse_spec(with_layer_name(name))
        assert e.value.problems[0][0] == "model.layers[0].name", name
    natural = GENERATED_NAMES | {n for n in dir(builtins) if n.isidentifier()}
    for name in sorted(natural - set(keyword.kwlist) - NN_MODULE_ATTRIBUTES - {"x"}):
        if not name.startswith("_"):
            parse_spec(with_layer_name(name))  # accepted


def test_output_paths_stay_in_the_output_folder(tmp_path):
    for name in ["../x", "/tmp/x", "a/b", "..", "", "X", "x\n"]:
        with pytest.raises(ValueError):
            output_folder(tmp_path, name)
    assert output_folder(tmp_path, "xor") == tmp_path / "xor"
    for name in ["../x", "a/b", "..", ".", ""]:
        with pytest.raises(ValueError):
            write_atomically({name: "text"}, tmp_path / "folder")
    assert not (tmp_path / "folder").exists()
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ accepted but nasty

NASTY = (
    "end \"\"\" here ''' and \\ backslash \\N{BULLET} \\x41 \\\n"
    f"import os; {MARKER} = os.system('touch {MARKER}')\r\n"
    f"\r{MARKER}_cr = 1 \x00 nul \x1b[31m red \x0b\x0c\u2028{MARKER}_ls = 1\u2029"
    f"\x85{MARKER}_nel = 1 \u202e reversed \u202c # comment */ --> "
    f"<script>alert('{MARKER}')</script> `tick` | pipe {{{{ jinja }}}} {{% raw %}} "
    "$(echo hi) ; & && || \t tab"
)
NASTY_FILE = f'nasty """ \' `{MARKER}` $(touch {MARKER}) ; x.json'


def _code_only(text: str) -> str:
    """The source with every comment and string literal taken out."""
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return " ".join(
        t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING)
    )


def _docstring_starts(tree: ast.AST) -> set[tuple[int, int]]:
    """Where each docstring of a module, class or function starts."""
    starts = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                starts.add((first.lineno, first.col_offset))
    return starts


def _assert_inert(text: str, name: str) -> None:
    """``MARKER`` only in comments and docstrings of a file that parses."""
    tree = ast.parse(text, filename=name)
    starts = _docstring_starts(tree)
    found = False
    for t in tokenize.generate_tokens(io.StringIO(text).readline):
        if MARKER in t.string:
            found = True
            assert t.type == tokenize.COMMENT or (
                t.type == tokenize.STRING and t.start in starts
            ), f"{name}: {t}"
    assert MARKER not in _code_only(text), name
    assert found or name == "test_crosscheck.py", f"{name}: the text is not shown"


def _nasty_specs(folder):
    """A spec with a nasty description and file name; a CSV with nasty headers."""
    spec = xor_spec(description=NASTY)
    described = folder / NASTY_FILE
    described.write_text(json.dumps(spec))
    csv_folder = folder / "csv"
    csv_folder.mkdir()
    header = f'"a\nb","x\'); {MARKER} = 1 #\u2028"""'
    rows = "\n".join(f"{i % 3},{i % 2}" for i in range(12))
    (csv_folder / "data.csv").write_text(f"{header}\n{rows}\n")
    # the target column's header lands in a comment of load_data
    csv_spec = xor_spec(
        name="nasty_csv",
        description=NASTY,
        data={"kind": "file", "path": "data.csv", "target": 1},
    )
    csv_path = csv_folder / "nasty_csv.json"
    csv_path.write_text(json.dumps(csv_spec))
    return [described, csv_path]


def test_nasty_text_compiles_runs_and_stays_in_comments(tmp_path, capsys):
    out = tmp_path / "out"
    for spec in _nasty_specs(tmp_path):
        folder = compile_spec(spec, out)
        for name in sorted(p.name for p in folder.iterdir()):
            text = (folder / name).read_text(encoding="utf-8")
            assert "\x00" not in text and "\u202e" not in text and "\x1b" not in text
            assert "\u2028" not in text and "\u2029" not in text and "\x85" not in text
            if name.endswith(".py"):
                _assert_inert(text, name)
            elif name == "README.md":
                assert "<script>" not in text
                assert not any(
                    line.startswith("import os") for line in text.splitlines()
                )
            elif name.endswith(".dot"):
                assert "<script>" not in text
        for impl in IMPLEMENTATIONS:
            module = load_module(folder / f"{impl}.py", f"nasty_{folder.name}_{impl}")
            assert module.__doc__.startswith(f"{folder.name}: end ")
            module.main(["--epochs", "1", "--quiet"])
    assert capsys.readouterr().out == ""
    assert not (tmp_path / MARKER).exists()
    assert not (ROOT / MARKER).exists()


def test_the_readme_shows_a_nasty_file_name_safely(tmp_path):
    spec = _nasty_specs(tmp_path)[0]
    folder = compile_spec(spec, tmp_path / "out")
    readme = (folder / "README.md").read_text(encoding="utf-8")
    command = next(
        line for line in readme.splitlines() if line.startswith("mlpgen crosstest")
    )
    quoted = command[len("mlpgen crosstest ") :]
    r = subprocess.run(
        ["sh", "-c", f"printf %s {quoted}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert r.stdout == NASTY_FILE
    assert not (tmp_path / MARKER).exists()


# ------------------------------------------------------------------ the name audit


def _identifiers(node: ast.AST) -> set[str]:
    """Every name a piece of Python binds or reads (variables, functions, classes, imports)."""
    found = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            found.add(n.id)
        elif isinstance(n, ast.arg):
            found.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            found.add(n.name)
        elif isinstance(n, ast.alias):
            found.add((n.asname or n.name).split(".")[0])
    return found


def _names_a_layer_must_not_take(text: str, layers: set[str]) -> dict[str, str]:
    """Name -> where: every module-level name, and every name of each top-level
    function or class in which a layer name is a variable."""
    found = {}
    for stmt in ast.parse(text).body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            found[stmt.name] = "module level"
            names = _identifiers(stmt)
            if names & layers:
                found.update(dict.fromkeys(names - layers, stmt.name))
        else:
            found.update(dict.fromkeys(_identifiers(stmt), "module level"))
    return {k: v for k, v in found.items() if not k.startswith("d_")}


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """(program, rendered files) of every gallery and coverage spec, with the
    teaching files."""
    folder = tmp_path_factory.mktemp("audit")
    paths = [*SPECS, *(write(folder, spec) for spec in COVERAGE.values())]
    out = []
    for path in paths:
        prog = build(path)
        out.append(
            (prog, render(prog, teaching=Teaching(exercise="guided", ladder=True)))
        )
    return out


def test_every_name_the_generated_code_uses_is_known_to_the_namer(programs):
    """Tensors are variables of forward and backward, and submodules of the
    nn.Module class: the names those scopes and the module level use must be
    in spec.GENERATED_NAMES, which autodiff.Names never gives a tensor."""
    unknown = {}
    base = GENERATED_NAMES | set(keyword.kwlist) | set(dir(builtins))
    for prog, files in programs:
        layers = {layer.name for layer in prog.net.layers}
        allocated = prog.names.taken - base  # variables and classes of this program
        for impl in (*IMPLEMENTATIONS, *TEACHING):
            found = _names_a_layer_must_not_take(files[f"{impl}.py"], layers)
            for identifier, where in found.items():
                if (
                    identifier in base
                    or identifier in allocated
                    or identifier[0] == "_"
                ):
                    continue
                if identifier == class_name(prog.net.spec.name):
                    continue
                unknown.setdefault(
                    identifier, f"{prog.net.spec.name}/{impl}.py {where}"
                )
    assert not unknown, f"add these to spec.GENERATED_NAMES: {unknown}"


@pytest.mark.parametrize("name", ["exec", "self", "np", "torch", "params", "d_fc1"])
def test_a_layer_named_like_the_code_runs_as_itself(tmp_path, name):
    """Names the generated code uses are renamed variables, never the code's own."""
    path = tmp_path / "named.json"
    path.write_text(json.dumps(with_layer_name(name)))
    folder = compile_spec(path, tmp_path)
    for impl in IMPLEMENTATIONS:
        module = load_module(folder / f"{impl}.py", f"named_{name}_{impl}")
        module.main(["--epochs", "1", "--quiet"])
    assert f'"{name}.weight"' in (folder / "numpy_backprop.py").read_text()


def test_layer_names_the_code_uses_are_renamed_and_the_three_agree(tmp_path):
    """PyTorch users name layers out, input, sum, loss, sigmoid: the generated
    code renames its own variables (sum -> sum_), the dump and state_dict()
    keep the spec's names, and the three implementations agree."""
    layers = [
        {"name": "input", "type": "linear", "out": 4},
        {"name": "sigmoid", "type": "sigmoid"},
        {"name": "sum", "type": "add", "inputs": ["input", "sigmoid"]},
        {"name": "loss", "type": "dropout", "p": 0.25},
        {"name": "params", "type": "activation", "expr": "x * tanh(x)"},
        {"name": "out", "type": "linear", "out": 1},
        {"name": "Hostile", "type": "identity"},
    ]
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(xor_spec(model={"layers": layers})))
    folder = compile_spec(path, tmp_path, Teaching(ladder=True))
    text = (folder / "numpy_backprop.py").read_text()
    assert "sum_ = input_ + sigmoid_" in text
    assert "# sum = input + σ(input)" not in text and "# sum = input + sigmoid" in text
    dumps = {}
    for impl in (*IMPLEMENTATIONS, *TEACHING[1:]):
        module = load_module(folder / f"{impl}.py", f"natural_{impl}")
        module.main(["--quiet", "--dump", str(tmp_path / f"{impl}.npz")])
        dumps[impl] = dict(np.load(tmp_path / f"{impl}.npz"))
    ref = dumps["numpy_backprop"]
    assert {"step0/sum", "step0/d_sum", "init/out.weight", "step0/Hostile"} <= set(ref)
    for impl in list(dumps)[1:]:
        assert set(dumps[impl]) == set(ref)
        for key, value in ref.items():
            np.testing.assert_allclose(dumps[impl][key], value, rtol=1e-10, atol=1e-12)


def test_the_model_class_never_clashes(programs):
    for prog, files in programs:
        cls = class_name(prog.net.spec.name)
        assert f"class {cls}(nn.Module):" in files["torch_module.py"]
        assert cls not in GENERATED_NAMES


def test_nn_module_attributes_are_all_reserved():
    """spec.NN_MODULE_ATTRIBUTES: torch.nn.Module's public attributes, listed
    there because the compile path never imports torch."""
    torch = pytest.importorskip("torch")
    module = torch.nn.Module()
    public = {n for n in set(dir(module)) | set(vars(module)) if not n.startswith("_")}
    assert public <= NN_MODULE_ATTRIBUTES
