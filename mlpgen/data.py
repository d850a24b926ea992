"""What the spec's data provides, known at compile time without generating it.

The data itself is made by the generated code (the same NumPy lines in all
three files); the compiler only needs its shapes to infer and check the graph,
and the inline arrays to embed them.

A ``file`` is read here once, to learn its shape and to report what is wrong
with it (missing column, ragged row, a cell that is not a number) before
anything is written. Its contents then travel with the generated scripts: a
copy sits next to them (``data.csv`` or ``data.npz``), so they stay standalone.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
import stat
import struct
import zipfile
from array import array
from dataclasses import dataclass, replace
from pathlib import Path

from .ops import LOSSES
from .schema import show
from .spec import (
    MAX_FEATURES,
    MAX_SAMPLES,
    MAX_VALUES,
    FileData,
    Spec,
    SpecError,
    TokenInput,
)
from .text import one_line

MAX_FILE_BYTES = 50_000_000  # a data file (.csv or .npz), read whole


@dataclass(frozen=True)
class DataFile:
    """A data file to copy next to the generated scripts, and how they read it."""

    name: str  # the copy's file name: data.csv or data.npz
    content: bytes
    source: str  # data.path as the spec wrote it
    target: int | None = None  # .csv: the target column's index
    target_name: str | None = None  # .csv: its header


@dataclass(frozen=True)
class DataInfo:
    features: int | None  # columns of x, None when the spec's model.input must say
    targets: int | None  # columns of float targets
    classes: int | None  # number of classes for class-index targets
    float_targets: bool  # targets are floats (not usable as class indices)
    n: int | None  # number of samples, when known
    x: tuple | None = None  # inline data, as nested tuples
    y: tuple | None = None  # inline targets: rows (float) or indices (class)
    file: DataFile | None = None  # kind file: the copy the scripts read
    tokens: bool = False  # x holds integer token indices (N, T), for an embedding
    vocab_used: int | None = None  # 1 + the largest token index, when known
    largest_at: str = ""  # where that largest index is: "x[4, 1]"


def describe(spec: Spec) -> DataInfo:
    d = spec.data
    classification = LOSSES[spec.loss.type].targets == "class"
    problems: list[tuple[str, str]] = []
    info = None
    token_input = isinstance(spec.model.input, TokenInput)
    if token_input and d.kind not in ("inline", "file"):
        raise SpecError(
            spec.source,
            [
                (
                    "model.input",
                    (
                        f"token inputs need integer data: inline integers or an .npz "
                        f"with an integer array x, not {d.kind} data (floats)"
                    ),
                )
            ],
        )
    if d.kind == "inline":
        x = tuple(tuple(float(v) for v in row) for row in d.x)
        if token_input:
            x, problems = _token_rows(x)
        rows = [r if isinstance(r, (list, tuple)) else [r] for r in d.y]
        if classification:
            labels = []
            for i, r in enumerate(rows):
                if len(r) != 1 or float(r[0]) != int(r[0]) or r[0] < 0:
                    problems.append(
                        (
                            f"data.y[{i}]",
                            f"{spec.loss.type} needs a class index (an integer >= 0), got {r}",
                        )
                    )
                    continue
                labels.append(int(r[0]))
            classes = max(labels) + 1 if labels else None
            info = DataInfo(len(x[0]), None, classes, False, len(x), x, tuple(labels))
            if token_input:
                info = _with_tokens(info, x)
        else:
            width = len(rows[0])
            for i, r in enumerate(rows):
                if len(r) != width:
                    problems.append(
                        (
                            f"data.y[{i}]",
                            f"has {len(r)} values, the first row has {width}",
                        )
                    )
            y = tuple(tuple(float(v) for v in r) for r in rows)
            for i, row in enumerate(y):
                problems += _hinge_target_problems(spec, list(row), f"data.y[{i}]")[:1]
                if problems:
                    break
            info = DataInfo(len(x[0]), width, None, True, len(x), x, y)
            if token_input:
                info = _with_tokens(info, x)
    elif d.kind == "random":
        if d.classes is not None:
            info, found = _labels(spec, None, d.classes, d.n, "data.classes")
            problems += found
        else:
            if classification or spec.loss.type == "hinge":
                problems.append(
                    (
                        "data.outputs",
                        f"{spec.loss.type} needs class targets: use data.classes",
                    )
                )
            info = DataInfo(None, d.outputs, None, True, d.n)
    elif d.kind == "spiral":
        n = d.n_per_class * d.classes
        info, found = _labels(spec, 2, d.classes, n, "data.classes")
        problems += found
    elif d.kind == "blobs":
        info, found = _labels(spec, d.features, d.classes, d.n, "data.classes")
        problems += found
    elif d.kind in ("moons", "circles"):
        info, found = _labels(spec, 2, 2, d.n, "data.kind")
        problems += found
    elif d.kind in ("teacher", "function"):
        if classification or spec.loss.type == "hinge":
            problems.append(
                (
                    "data.kind",
                    f"{d.kind} data has float targets, which {spec.loss.type} cannot use",
                )
            )
        if d.kind == "teacher":
            info = DataInfo(d.features, d.outputs, None, True, d.n)
        else:
            info = DataInfo(1, 1, None, True, d.n)
    elif d.kind == "file":
        info = _describe_file(spec, classification)
    else:
        raise SpecError(
            spec.source, [("data.kind", f"'{d.kind}' is not supported yet")]
        )
    if problems:
        raise SpecError(spec.source, problems)
    if info.tokens and d.standardize:
        raise SpecError(
            spec.source,
            [
                (
                    "data.standardize",
                    (
                        "x holds token indices, which are names of vocabulary entries, "
                        "not quantities: they cannot be standardized (set "
                        "standardize: false)"
                    ),
                )
            ],
        )
    if info.n is not None and d.split is not None:
        n_train = int(d.split.train * info.n)
        if n_train < 1:
            raise SpecError(
                spec.source,
                [("data.split.train", f"leaves no training sample out of {info.n}")],
            )
    return info


def _token_rows(x: tuple) -> tuple[tuple, list[tuple[str, str]]]:
    """Inline x as token indices: integers >= 0, or one problem per bad value
    (the first few)."""
    problems = []
    for i, row in enumerate(x):
        for j, v in enumerate(row):
            if v != int(v) or v < 0:
                problems.append(
                    (
                        f"data.x[{i}][{j}]",
                        f"a token index must be an integer >= 0, got {v:g}",
                    )
                )
                if len(problems) == 5:
                    return x, problems
    return tuple(tuple(int(v) for v in row) for row in x), problems


def _with_tokens(info: DataInfo, x) -> DataInfo:
    """``info`` for token inputs: where the largest index is, for the
    vocabulary check of graph.build."""
    import numpy as np

    a = np.asarray(x)
    i, j = np.unravel_index(int(a.argmax()), a.shape)
    return replace(
        info, tokens=True, vocab_used=int(a.max()) + 1, largest_at=f"x[{i}, {j}]"
    )


# How the data kinds that make class labels (random with classes, spiral,
# blobs, moons, circles) give them to each loss: class indices to a loss on
# classes; ±1 in one column to hinge; 0/1 in one column to bce and
# bce_with_logits; one-hot rows to mse (Nielsen's network.py).
LABEL_TARGETS = {"hinge": "pm1", "bce": "01", "bce_with_logits": "01", "mse": "onehot"}


def label_targets(loss: str) -> str:
    """How generated class labels become this loss's targets: "index", "pm1",
    "01" or "onehot"."""
    if LOSSES[loss].targets == "class":
        return "index"
    return LABEL_TARGETS[loss]


def _labels(
    spec: Spec, features: int | None, classes: int, n: int, where: str
) -> tuple[DataInfo, list[tuple[str, str]]]:
    """The DataInfo of a kind that makes ``classes`` class labels, as the loss
    takes them; and the problem when it cannot take them."""
    loss = spec.loss.type
    encoding = label_targets(loss)
    if encoding == "index":
        return DataInfo(features, None, classes, False, n), []
    if encoding == "onehot":
        return DataInfo(features, classes, None, True, n), []
    info = DataInfo(features, 1, None, True, n)
    if classes != 2:
        what = "±1" if encoding == "pm1" else "0/1"
        message = (
            f"{loss} takes two classes ({what} targets), the data has {classes}: "
            "use classes: 2, or cross_entropy for more classes"
        )
        return info, [(where, message)]
    return info, []


def _hinge_target_problems(spec: Spec, values, where: str) -> list[tuple[str, str]]:
    """hinge needs targets of −1 and +1 (inline data)."""
    bad = _hinge_target_problems_of(values) if spec.loss.type == "hinge" else None
    if bad is None:
        return []
    return [(where, f"hinge needs targets of −1 or +1 (the two classes), got {bad:g}")]


def _hinge_target_problems_of(values) -> float | None:
    """The first value that is neither −1 nor +1, or None."""
    return next((float(v) for v in values if v not in (-1.0, 1.0)), None)


# -------------------------------------------------------------------- data files


class _FileProblem(Exception):
    """One problem with the data file, at a key path (``data.path`` by default)."""

    def __init__(self, message: str, path: str = "data.path"):
        super().__init__(message)
        self.path = path


def _describe_file(spec: Spec, classification: bool) -> DataInfo:
    d = spec.data
    assert isinstance(d, FileData)
    path = Path(spec.base_dir) / d.path
    try:
        raw = _read_regular_file(path, d.path)
        if not raw:
            raise _FileProblem(f"{show(d.path)} is empty")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return _describe_csv(raw, d, classification, spec.loss.type)
        if suffix == ".npz":
            return _describe_npz(raw, d, classification, spec.loss.type)
        raise _FileProblem(f"must name a .csv or .npz file, got {show(d.path)}")
    except _FileProblem as e:
        raise SpecError(spec.source, [(e.path, str(e))]) from None


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_regular_file(path: Path, written: str) -> bytes:
    """The bytes of the regular file at ``path``, at most MAX_FILE_BYTES of them.

    Opened without blocking (a FIFO must not hang compile) and checked on the
    open descriptor, so that nothing but a regular file is read (a symlink to
    /dev/zero or /dev/urandom would be read forever), and its size before it is.
    ``written`` is data.path as the spec wrote it, for the messages.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _FileProblem(f"cannot read {show(str(path))}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next(
                (what for test, what in _FILE_KINDS if test(info.st_mode)), "special"
            )
            raise _FileProblem(f"{show(written)} is {kind}, not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise _FileProblem(
                f"{show(written)} has {info.st_size:,} bytes, more than mlpgen's "
                f"limit of {MAX_FILE_BYTES:,} for a data file"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(info.st_size + 1)  # one byte more: did it grow?
    except OSError as e:
        raise _FileProblem(f"cannot read {show(str(path))}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > info.st_size:
        raise _FileProblem(f"{show(written)} grew while it was read")
    return raw


def _number(text: str) -> float | None:
    """The finite float a CSV cell holds, or None."""
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _csv_text(v: float) -> str:
    """A number as the copy writes it: exactly the same float when read back."""
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _names(header: list[str], limit: int = 10) -> str:
    """Column names as an error line shows them: quoted, escaped, the first few."""
    shown = [show(name, 40) for name in header[:limit]]
    return ", ".join(
        shown + ([f"... ({len(header)} in all)"] if len(header) > limit else [])
    )


def _describe_csv(raw: bytes, d, classification: bool, loss: str) -> DataInfo:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _FileProblem(
            f"{show(d.path)} is not UTF-8 text (byte {e.start})"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    values = array("d")  # every number, row after row (8 bytes each)
    rows = 0
    t = 0
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank lines carry nothing
            if header is None:
                header = [c.strip() for c in cells]
                if all(_number(name) is not None for name in header):
                    raise _FileProblem(
                        f"the first row of {show(d.path)} is all numbers "
                        f"({_names(header, 5)}): a .csv needs a header row naming "
                        "its columns; add one"
                    )
                if len(header) - 1 > MAX_FEATURES:
                    raise _FileProblem(
                        f"{show(d.path)} has {len(header) - 1:,} feature columns, "
                        f"more than mlpgen's limit of {MAX_FEATURES:,}"
                    )
                t = _target_column(d.target, header)
                continue
            if len(cells) != len(header):
                raise _FileProblem(
                    f"line {reader.line_num} of {show(d.path)} has {len(cells)} "
                    f"values, the header has {len(header)} columns"
                )
            rows += 1
            if rows > MAX_SAMPLES or rows * len(header) > MAX_VALUES:
                raise _FileProblem(
                    f"{show(d.path)} has more than {MAX_SAMPLES:,} rows or "
                    f"{MAX_VALUES:,} numbers, mlpgen's limits on data"
                )
            for name, cell in zip(header, cells):
                v = _number(cell)
                if v is None:
                    raise _FileProblem(
                        f"line {reader.line_num} of {show(d.path)}, column "
                        f"{show(name, 40)}: {show(cell.strip(), 40)} is not a "
                        "finite number"
                    )
                values.append(v)
    except csv.Error as e:
        raise _FileProblem(
            f"line {reader.line_num} of {show(d.path)}: {one_line(str(e))}"
        ) from None
    if header is None:
        raise _FileProblem(f"{show(d.path)} has no header row")
    if not rows:
        raise _FileProblem(f"{show(d.path)} has a header row but no data rows")
    width = len(header)
    if width < 2:
        raise _FileProblem(
            f"{show(d.path)} has one column: it needs the target and at least "
            "one feature"
        )
    classes = _classes(
        values[t::width],
        classification,
        loss,
        f"column {show(header[t], 40)}",
        "data.target",
    )
    # The copy: the same header and numbers, one canonical spelling that
    # np.loadtxt reads back exactly (no quotes, no blank lines, "\n" endings).
    out = io.StringIO()
    out.write(",".join(" ".join(name.replace(",", " ").split()) for name in header))
    out.write("\n")
    for start in range(0, len(values), width):
        out.write(",".join(map(_csv_text, values[start : start + width])) + "\n")
    file = DataFile("data.csv", out.getvalue().encode(), d.path, t, header[t])
    bad = _hinge_target_problems_of(values[t::width]) if loss == "hinge" else None
    if bad is not None:
        raise _FileProblem(
            f"hinge needs targets of −1 or +1 in column {show(header[t], 40)}, "
            f"got {bad:g}",
            "data.target",
        )
    if classification:
        return DataInfo(width - 1, None, classes, False, rows, file=file)
    return DataInfo(width - 1, 1, None, True, rows, file=file)


def _target_column(target, header: list[str]) -> int:
    if target is None:
        raise _FileProblem(
            "required for a .csv file: the target column's name or index", "data.target"
        )
    if isinstance(target, int):
        if target >= len(header):
            raise _FileProblem(
                f"column index {target} is out of range: the file has "
                f"{len(header)} columns (0 to {len(header) - 1})",
                "data.target",
            )
        return target
    if header.count(target) > 1:
        raise _FileProblem(
            f"{show(target)} names {header.count(target)} columns: use its index",
            "data.target",
        )
    if target not in header:
        close = difflib.get_close_matches(target, header[:1000], n=1)
        hint = (
            f"did you mean {show(close[0], 40)}?"
            if close
            else "columns: " + _names(header)
        )
        raise _FileProblem(f"no column named {show(target)} ({hint})", "data.target")
    return header.index(target)


def _classes(
    values, classification: bool, loss: str, what: str, path: str
) -> int | None:
    """The number of classes of class-index targets (None for float targets)."""
    if not classification:
        return None
    for v in values:
        if v < 0 or v != int(v):
            raise _FileProblem(
                f"{loss} needs class indices (integers >= 0) in {what}, got {v:g}", path
            )
    return int(max(values)) + 1


# An .npz holds x.npy and y.npy (and possibly more members, which are ignored).
# Each member's .npy header is read from the zip before its data, and checked
# against the limits before anything is allocated: the shape a header declares
# is what np.load would allocate. The uncompressed sizes and compression ratios
# the zip declares are checked too (a zip bomb inflates a few MB into GB).
MAX_NPZ_MEMBERS = 100
MAX_NPY_BYTES = MAX_VALUES * 8 + 100_000  # every number a float64, and the header
MAX_RATIO = 1000  # deflate cannot do much better than 1032:1
_RATIO_FROM = 1_000_000  # bytes: small members may compress as well as they like


def _zip_entries(raw: bytes) -> int | None:
    """The member count the zip's end record declares, read before parsing it."""
    end = raw.rfind(b"PK\x05\x06", max(0, len(raw) - 65_557))
    if end < 0 or end + 22 > len(raw):
        return None
    return struct.unpack_from("<H", raw, end + 10)[0]


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: str):
    """(shape, dtype) from one member's .npy header, its sizes checked first."""
    import numpy as np

    where = f"array {key} of {show(path)}"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _FileProblem(
            f"{where} uses zip compression method {info.compress_type}; "
            "np.savez and np.savez_compressed write stored or deflated members"
        )
    if info.file_size > MAX_NPY_BYTES:
        raise _FileProblem(
            f"{where} inflates to {info.file_size:,} bytes, more than mlpgen's limit "
            f"of {MAX_NPY_BYTES:,}"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > _RATIO_FROM and ratio > MAX_RATIO:
        raise _FileProblem(
            f"{where} inflates {ratio:,.0f} times ({info.compress_size:,} bytes to "
            f"{info.file_size:,}), more than mlpgen accepts ({MAX_RATIO:,}): a zip "
            "bomb, or an array of one repeated value"
        )
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _FileProblem(
                f"{where} has .npy format version {version}: arrays of numbers "
                "are versions 1.0 and 2.0"
            )
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise _FileProblem(f"{where} holds {one_line(str(dtype))}, not numbers")
    return tuple(shape), dtype


def _checked_npz_shapes(raw: bytes, path: str) -> dict[str, tuple[int, ...]]:
    """The shapes of x and y, every limit checked on the headers alone."""
    entries = _zip_entries(raw)
    if entries is None:
        raise _FileProblem(
            f"{show(path)} is not a readable .npz archive (no zip end record)"
        )
    if entries > MAX_NPZ_MEMBERS:
        raise _FileProblem(
            f"{show(path)} has {entries:,} members, more than mlpgen reads "
            f"({MAX_NPZ_MEMBERS}); an .npz of x and y needs 2"
        )
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        members = {info.filename: info for info in zf.infolist()}
        missing = [k for k in ("x", "y") if f"{k}.npy" not in members]
        if missing:
            arrays = [name[:-4] for name in members if name.endswith(".npy")]
            raise _FileProblem(
                f"{show(path)} has no array {' or '.join(missing)} "
                f"(it has: {_names(arrays) or 'nothing'})"
            )
        shapes = {
            key: _npy_header(zf, members[f"{key}.npy"], key, path)[0]
            for key in ("x", "y")
        }
    sizes = {key: math.prod(shape) for key, shape in shapes.items()}
    for key, shape in shapes.items():
        if shape and shape[0] > MAX_SAMPLES:
            raise _FileProblem(
                f"array {key} of {show(path)} has {shape[0]:,} rows, more than "
                f"mlpgen's limit of {MAX_SAMPLES:,} samples"
            )
        if len(shape) > 1 and math.prod(shape[1:]) > MAX_FEATURES:
            raise _FileProblem(
                f"array {key} of {show(path)} has {math.prod(shape[1:]):,} values "
                f"per row, more than mlpgen's limit of {MAX_FEATURES:,} features"
            )
    if sum(sizes.values()) > MAX_VALUES:
        raise _FileProblem(
            f"{show(path)} holds {sum(sizes.values()):,} numbers in x and y, more "
            f"than mlpgen's limit of {MAX_VALUES:,}"
        )
    return shapes


def _describe_npz(raw: bytes, d, classification: bool, loss: str) -> DataInfo:
    import numpy as np

    if d.target is not None:
        raise _FileProblem(
            "only for a .csv file: an .npz file has its targets in the array y",
            "data.target",
        )
    if not raw.startswith(b"PK"):
        raise _FileProblem(
            f"{show(d.path)} is not an .npz archive (a zip of .npy arrays)"
        )
    try:
        _checked_npz_shapes(raw, d.path)
        # now that the sizes are known to be within the limits
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            arrays = {}
            for key in ("x", "y"):
                with zf.open(f"{key}.npy") as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
        x, y = arrays["x"], arrays["y"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, struct.error) as e:
        raise _FileProblem(
            f"{show(d.path)} is not a readable .npz archive: {one_line(str(e))[:200]}"
        ) from None
    for key, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise _FileProblem(
                f"array {key} of {show(d.path)} holds {a.dtype}, not numbers"
            )
        if not np.isfinite(a.astype(np.float64)).all():
            raise _FileProblem(f"array {key} of {show(d.path)} holds non-finite values")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise _FileProblem(
            f"array x of {show(d.path)} must be (samples, features), got {x.shape}"
        )
    if x.dtype.kind in "iu" and x.min() < 0:
        i, j = np.unravel_index(int(x.argmin()), x.shape)
        raise _FileProblem(
            f"array x of {show(d.path)} holds integers, which are token indices, "
            f"and x[{i}, {j}] is {x[i, j]}: an index must be >= 0",
            "data.x",
        )
    n = x.shape[0]
    if y.ndim not in (1, 2) or y.shape[0] != n or y.size == 0:
        raise _FileProblem(
            f"array y of {show(d.path)} must have one row per sample of x ({n}), "
            f"got {y.shape}"
        )
    file = DataFile("data.npz", raw, d.path)
    if classification:
        if y.ndim == 2 and y.shape[1] != 1:
            raise _FileProblem(
                f"{loss} needs one class index per sample, array y has shape {y.shape}"
            )
        classes = _classes(
            y.reshape(-1).astype(np.float64), True, loss, "array y", "data.path"
        )
        info = DataInfo(x.shape[1], None, classes, False, n, file=file)
    else:
        bad = (
            _hinge_target_problems_of(y.reshape(-1).tolist())
            if loss == "hinge"
            else None
        )
        if bad is not None:
            raise _FileProblem(
                f"hinge needs targets of −1 or +1 in array y of {show(d.path)}, got {bad:g}"
            )
        targets = 1 if y.ndim == 1 else y.shape[1]
        info = DataInfo(x.shape[1], targets, None, True, n, file=file)
    # an integer x holds token indices (spec-format.md, token inputs)
    return _with_tokens(info, x) if x.dtype.kind in "iu" else info
