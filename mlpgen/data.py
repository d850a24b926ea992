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
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .ops import LOSSES
from .spec import Spec, SpecError

MAX_FILE_BYTES = 50_000_000


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


def describe(spec: Spec) -> DataInfo:
    d = spec.data
    classification = LOSSES[spec.loss.type].targets == "class"
    problems: list[tuple[str, str]] = []
    info = None
    if d.kind == "inline":
        x = tuple(tuple(float(v) for v in row) for row in d.x)
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
            info = DataInfo(len(x[0]), width, None, True, len(x), x, y)
    elif d.kind == "random":
        if d.classes is not None:
            if not classification:
                problems.append(
                    (
                        "data.classes",
                        f"{spec.loss.type} needs float targets: use data.outputs",
                    )
                )
            info = DataInfo(None, None, d.classes, False, d.n)
        else:
            if classification:
                problems.append(
                    (
                        "data.outputs",
                        f"{spec.loss.type} needs class targets: use data.classes",
                    )
                )
            info = DataInfo(None, d.outputs, None, True, d.n)
    elif d.kind == "spiral":
        if not classification:
            problems.append(
                (
                    "data.kind",
                    f"spiral data has class labels, which {spec.loss.type} cannot use",
                )
            )
        info = DataInfo(2, None, d.classes, False, d.n_per_class * d.classes)
    elif d.kind == "file":
        info = _describe_file(spec, classification)
    else:
        raise SpecError(
            spec.source, [("data.kind", f"'{d.kind}' is not supported yet")]
        )
    if problems:
        raise SpecError(spec.source, problems)
    if info.n is not None and d.split is not None:
        n_train = int(d.split.train * info.n)
        if n_train < 1:
            raise SpecError(
                spec.source,
                [("data.split.train", f"leaves no training sample out of {info.n}")],
            )
    return info


# -------------------------------------------------------------------- data files


class _FileProblem(Exception):
    """One problem with the data file, at a key path (``data.path`` by default)."""

    def __init__(self, message: str, path: str = "data.path"):
        super().__init__(message)
        self.path = path


def _describe_file(spec: Spec, classification: bool) -> DataInfo:
    d = spec.data
    path = Path(spec.base_dir) / d.path
    try:
        try:
            raw = path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else None
        except OSError as e:
            raise _FileProblem(f"cannot read {str(path)!r}: {e.strerror}") from None
        if raw is None:
            raise _FileProblem(f"{d.path!r} is larger than {MAX_FILE_BYTES} bytes")
        if not raw:
            raise _FileProblem(f"{d.path!r} is empty")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return _describe_csv(raw, d, classification, spec.loss.type)
        if suffix == ".npz":
            return _describe_npz(raw, d, classification, spec.loss.type)
        raise _FileProblem(f"must name a .csv or .npz file, got {d.path!r}")
    except _FileProblem as e:
        raise SpecError(spec.source, [(e.path, str(e))]) from None


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


def _describe_csv(raw: bytes, d, classification: bool, loss: str) -> DataInfo:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _FileProblem(f"{d.path!r} is not UTF-8 text (byte {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header, rows = None, []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank lines carry nothing
            if header is None:
                header = [c.strip() for c in cells]
                t = _target_column(d.target, header)
                continue
            if len(cells) != len(header):
                raise _FileProblem(
                    f"line {reader.line_num} of {d.path!r} has {len(cells)} values, "
                    f"the header has {len(header)} columns"
                )
            values = []
            for name, cell in zip(header, cells):
                v = _number(cell)
                if v is None:
                    raise _FileProblem(
                        f"line {reader.line_num} of {d.path!r}, column {name!r}: "
                        f"{cell.strip()!r} is not a finite number"
                    )
                values.append(v)
            rows.append(values)
    except csv.Error as e:
        raise _FileProblem(f"line {reader.line_num} of {d.path!r}: {e}") from None
    if header is None:
        raise _FileProblem(f"{d.path!r} has no header row")
    if not rows:
        raise _FileProblem(f"{d.path!r} has a header row but no data rows")
    if len(header) < 2:
        raise _FileProblem(
            f"{d.path!r} has one column: it needs the target and at least one feature"
        )
    targets = [row[t] for row in rows]
    classes = _classes(
        targets, classification, loss, f"column {header[t]!r}", "data.target"
    )
    # The copy: the same header and numbers, one canonical spelling that
    # np.loadtxt reads back exactly (no quotes, no blank lines, "\n" endings).
    out = io.StringIO()
    out.write(",".join(" ".join(name.replace(",", " ").split()) for name in header))
    out.write("\n")
    for row in rows:
        out.write(",".join(_csv_text(v) for v in row) + "\n")
    file = DataFile("data.csv", out.getvalue().encode(), d.path, t, header[t])
    n, features = len(rows), len(header) - 1
    if classification:
        return DataInfo(features, None, classes, False, n, file=file)
    return DataInfo(features, 1, None, True, n, file=file)


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
            f"{target!r} names {header.count(target)} columns: use its index",
            "data.target",
        )
    if target not in header:
        close = difflib.get_close_matches(target, header, n=1)
        hint = (
            f"did you mean {close[0]!r}?" if close else "columns: " + ", ".join(header)
        )
        raise _FileProblem(f"no column named {target!r} ({hint})", "data.target")
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


def _describe_npz(raw: bytes, d, classification: bool, loss: str) -> DataInfo:
    import numpy as np

    if d.target is not None:
        raise _FileProblem(
            "only for a .csv file: an .npz file has its targets in the array y",
            "data.target",
        )
    if not raw.startswith(b"PK"):
        raise _FileProblem(f"{d.path!r} is not an .npz archive (a zip of .npy arrays)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise _FileProblem(
                    f"{d.path!r} has no array {' or '.join(missing)} "
                    f"(it has: {', '.join(archive.files) or 'nothing'})"
                )
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise _FileProblem(f"{d.path!r} is not a readable .npz archive: {e}") from None
    for key, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise _FileProblem(
                f"array {key} of {d.path!r} holds {a.dtype}, not numbers"
            )
        if not np.isfinite(a.astype(np.float64)).all():
            raise _FileProblem(f"array {key} of {d.path!r} holds non-finite values")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise _FileProblem(
            f"array x of {d.path!r} must be (samples, features), got {x.shape}"
        )
    n = x.shape[0]
    if y.ndim not in (1, 2) or y.shape[0] != n or y.size == 0:
        raise _FileProblem(
            f"array y of {d.path!r} must have one row per sample of x ({n}), got {y.shape}"
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
        return DataInfo(x.shape[1], None, classes, False, n, file=file)
    targets = 1 if y.ndim == 1 else y.shape[1]
    return DataInfo(x.shape[1], targets, None, True, n, file=file)
