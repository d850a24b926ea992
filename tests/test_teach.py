"""The teaching files (issue 17): derivations on the learning page, the
exercise and its grader, the PyTorch ladder, the notebook."""

from __future__ import annotations

import pytest

from mlpgen.ops import LAYERS, LOSSES

# ------------------------------------------------------------------ derivations


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_operation_brings_its_derivation(name):
    """A new operation brings the derivation of its rule with it: a few lines,
    each a sentence, down to the rule's matrix form."""
    text = LAYERS[name].derivation
    assert len(text) >= 60, f"ops.py: {name} has no derivation"
    assert all(line.strip().endswith(".") for line in text.splitlines()), name


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_brings_its_derivation(name):
    text = LOSSES[name].derivation
    assert len(text) >= 60, f"ops.py: {name} has no derivation"
    assert "∂L/∂" in text, name  # it arrives at the gradient the code computes
    assert all(line.strip().endswith(".") for line in text.splitlines()), name
