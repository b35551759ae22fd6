"""Readable pure-PyTorch LSTM oracle.

Every fused kernel in this package is tested against `lstm_layer`, so this
file favours clarity over speed: one explicit Python loop over time steps,
built only from differentiable torch ops, so autograd supplies the reference
gradients and any dtype/device works.
"""

import torch


def lstm_layer(x, state, weights, reverse=False, batch_sizes=None):
    """Run one LSTM layer in one direction.

    x: (T, B, I) time-major dense input, or packed data (N, I) when batch_sizes is given.
    state: tuple (h0, c0) with h0 (B, P) and c0 (B, H).
    weights: tuple (w_ih, w_hh, b_ih, b_hh, w_hr); b_ih/b_hh are None without bias, w_hr None without projection.
    Returns (y, (h_n, c_n)): y (T, B, P) dense or (N, P) packed.
    """
    h, c = state
    steps = _split_steps(x, batch_sizes)
    order = range(len(steps) - 1, -1, -1) if reverse else range(len(steps))

    outputs = [None] * len(steps)
    for t in order:
        x_t = steps[t]
        live = x_t.shape[0]
        # Only the first `live` sequences have a step t. The rest keep their
        # state: finished sequences (forward) keep their final state, and
        # not-yet-started ones (reverse) keep h0/c0 until their last step.
        h_t, c_t = lstm_cell(x_t, h[:live], c[:live], weights)
        h = torch.cat([h_t, h[live:]])
        c = torch.cat([c_t, c[live:]])
        outputs[t] = h_t

    y = torch.stack(outputs) if batch_sizes is None else torch.cat(outputs)
    return y, (h, c)


def lstm_cell(x_t, h, c, weights):
    """One LSTM step for a batch of rows: returns (h', c')."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    gates = x_t @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        gates = gates + b_ih
    if b_hh is not None:
        gates = gates + b_hh

    # Gate blocks are stacked along dim 0 of the weights in the order i, f, g, o.
    i, f, g, o = gates.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)

    c_next = f * c + i * g
    h_next = o * torch.tanh(c_next)
    if w_hr is not None:
        # Projection maps the hidden size H down to P; c stays at size H.
        h_next = h_next @ w_hr.T
    return h_next, c_next


def _split_steps(x, batch_sizes):
    """Split the input into a list of per-time-step row blocks.

    Dense input gives T blocks of B rows. Packed data stores step t as the
    next batch_sizes[t] rows, so splitting by batch_sizes slices exactly the
    live sequences of each step without any padding.
    """
    if batch_sizes is None:
        return list(x.unbind(0))
    return list(torch.split(x, batch_sizes.tolist()))
