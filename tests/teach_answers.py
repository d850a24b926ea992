"""Backward passes written by hand for the exercises, as a learner wrote them
(test_teach.py splices them into exercise.py, one answer per blank line).

xor at the guided level (the formulas given): a first attempt with ∂L/∂W
the wrong way round, then the fix. spiral_dropout at the hard level (only the
shapes given): the softmax written out with in-place steps, a first attempt
without the class weights, then the fix. The fixes are written differently
from the derived lines (other factor orders, other temporaries), and so also
show that the grader accepts any correct code, not only the derived text.
"""

XOR_FIXED = [
    "d_act2 = 2 * (act2 - y) / len(y)",
    "d_fc2 = d_act2 * act2 * (1 - act2)",
    'grads["fc2.weight"] = d_fc2.T @ act1',
    'd_act1 = d_fc2 @ params["fc2.weight"]',
    "d_fc1 = d_act1 * act1 * (1 - act1)",
    'grads["fc1.weight"] = d_fc1.T @ x',
]
# the first attempt: act1ᵀ @ ∂L/∂fc2 is (5, 1), the transpose of the weight
XOR_FIRST = [line.replace("d_fc2.T @ act1", "act1.T @ d_fc2") for line in XOR_FIXED]

_SOFTMAX = """n = len(y)
probs = np.exp(scores - scores.max(axis=1, keepdims=True))
probs /= probs.sum(axis=1, keepdims=True)
d_scores = probs.copy()
d_scores[np.arange(n), y] -= 1
"""
SPIRAL_DROPOUT_FIXED = [
    _SOFTMAX + "w = CLASS_WEIGHT[y]\nd_scores *= (w / w.sum())[:, None]",
    'grads["scores.weight"] = d_scores.T @ drop',
    'grads["scores.bias"] = d_scores.sum(axis=0)',
    'd_drop = d_scores @ params["scores.weight"]',
    "d_act = d_drop * drop_mask",
    "d_hidden = d_act * (hidden > 0)",
    'grads["hidden.weight"] = d_hidden.T @ x',
    'grads["hidden.bias"] = d_hidden.sum(axis=0)',
]
# the first attempt: the plain mean over the batch, the class weights forgotten
SPIRAL_DROPOUT_FIRST = [_SOFTMAX + "d_scores /= n", *SPIRAL_DROPOUT_FIXED[1:]]


def fill(exercise: str, answers: list[str]) -> str:
    """exercise.py with its blank lines (``… = None  # TODO``) replaced, in order."""
    lines = exercise.split("\n")
    blanks = [i for i, line in enumerate(lines) if line.endswith(" = None  # TODO")]
    assert len(blanks) == len(answers), (len(blanks), len(answers))
    for i, answer in zip(blanks, answers):
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines[i] = "\n".join(indent + part for part in answer.split("\n"))
    return "\n".join(lines)
