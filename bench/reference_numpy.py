"""Hand-written NumPy baselines, written the way the classic tutorials write them.

The benchmark (``bench/run.py``) times mlpgen's generated ``numpy_backprop.py``
against these loops. Nothing here was generated or tuned: the sigmoid is the
textbook ``1 / (1 + np.exp(-x))``, weights are stored ``(in, out)`` so that the
forward pass reads ``x @ W``, and every step records its loss (as the tutorials
print it), so both sides do the same work.

The data and the initial weights are passed in (the benchmark takes them from
the generated program), so the results can be compared number for number.
"""

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def train_xor(X, y, W1, W2, lr, epochs):
    """The 2-5-1 sigmoid network, mean squared error, full-batch SGD.

    W1 (2, 5) and W2 (5, 1) are updated in place; returns the loss of every epoch.
    """
    losses = []
    for epoch in range(epochs):
        # forward
        hidden = sigmoid(X @ W1)
        output = sigmoid(hidden @ W2)
        losses.append(float(np.mean((output - y) ** 2)))
        # backward: d(mean squared error)/d(output), then the chain rule
        d_output = 2 * (output - y) / len(X) * output * (1 - output)
        d_W2 = hidden.T @ d_output
        d_hidden = (d_output @ W2.T) * hidden * (1 - hidden)
        d_W1 = X.T @ d_hidden
        # update
        W1 -= lr * d_W1
        W2 -= lr * d_W2
    return losses


def train_two_layer(x, y, w1, w2, learning_rate, steps):
    """The two-layer ReLU network of "Learning PyTorch with examples" (numpy part).

    ``h = x.dot(w1)``, ``y_pred = relu(h).dot(w2)``, summed squared error, SGD.
    w1 (in, hidden) and w2 (hidden, out) are updated in place; returns the losses.
    """
    losses = []
    for t in range(steps):
        # Forward pass: compute predicted y
        h = x.dot(w1)
        h_relu = np.maximum(h, 0)
        y_pred = h_relu.dot(w2)

        # Compute and record loss
        loss = np.square(y_pred - y).sum()
        losses.append(float(loss))

        # Backprop to compute gradients of w1 and w2 with respect to loss
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.T.dot(grad_y_pred)
        grad_h_relu = grad_y_pred.dot(w2.T)
        grad_h = grad_h_relu.copy()
        grad_h[h < 0] = 0
        grad_w1 = x.T.dot(grad_h)

        # Update weights
        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
    return losses
