"""Write tests/specs/data/polynomial.npz: the data of the PyTorch tutorial "Learning
PyTorch with Examples" (its nn and optim sections) for the proof's test specs, made offline.

    x = torch.linspace(-math.pi, math.pi, 2000); y = torch.sin(x)
    xx = x.unsqueeze(-1).pow(torch.tensor([1, 2, 3]))

Here in float64 NumPy: x holds the features (x, x², x³), shape (2000, 3); y is
sin(x), shape (2000, 1). The tutorial fits y with nn.Linear(3, 1).

    python scripts/make_polynomial.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def main() -> None:
    x = np.linspace(-math.pi, math.pi, 2000)
    features = x[:, None] ** np.array([1, 2, 3])
    y = np.sin(x)[:, None]
    out = (
        Path(__file__).resolve().parent.parent
        / "tests"
        / "specs"
        / "data"
        / "polynomial.npz"
    )
    np.savez(out, x=features, y=y)
    print(f"wrote {out}: x {features.shape}, y {y.shape}")


if __name__ == "__main__":
    main()
