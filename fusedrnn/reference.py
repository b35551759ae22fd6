"""Readable pure-PyTorch recurrent layers: the oracle and the fallback.

Every fused kernel in this package is tested against these functions, and
they run whatever no kernel covers (devices and dtypes without one). So this
file favours clarity over speed: one explicit Python loop over time steps,
built only from differentiable torch ops, so autograd supplies the reference
gradients and any dtype/device works.

A layer function runs one layer in one direction:
    layer(x, state, weights, reverse=False, batch_sizes=None) -> (y, final_state)
x: (T, B, I) time-major dense input, or packed data (N, I) when batch_sizes
is given; state: a tuple of (B, S) tensors, h first ((h, c) for the LSTM);
weights: (w_ih, w_hh, b_ih, b_hh, w_hr), absent ones None; and optionally
regularization: a Regularization (below), what acts inside the recurrence.

A cell runs one step:
    cell(x_t, state, weights, recurrent_input=None) -> new_state
where `recurrent_input` is the h that W_hh multiplies (state[0] when None;
recurrent dropout hands it a masked copy, while the cell's own use of h,
the GRU's z * h, keeps the unmasked one).
"""
import functools
from typing import NamedTuple, Optional

import torch


class Regularization(NamedTuple):
    """What acts inside one layer's recurrence (one direction), with the
    masks drawn by fusedrnn.regularization from torch's generator. A mask
    means training; a probability without a mask means eval.

    recurrent dropout (Gal and Ghahramani 2016): the h entering W_hh is
        h * recurrent_mask / (1 - recurrent_dropout), one (B, P) mask for
        every step of the sequence; nothing in eval.
    zoneout (Krueger et al. 2016) of h, and of the LSTM's c with its own
        probability: in training a unit keeps its previous value where its
        mask (rows, P) or (rows, H), one row per row of the input, is True;
        in eval each unit is the expectation p * previous + (1 - p) * new.
    The layer's output at each step is the zoned h.
    """
    recurrent_mask: Optional[torch.Tensor] = None     # (B, P) bool, True: kept
    recurrent_dropout: float = 0.0
    zoneout_mask: Optional[torch.Tensor] = None       # (rows, P) bool, True: keeps h
    zoneout: float = 0.0
    cell_zoneout_mask: Optional[torch.Tensor] = None  # (rows, H) bool, True: keeps c
    cell_zoneout: float = 0.0


def lstm_cell(x_t, state, weights, recurrent_input=None):
    """One LSTM step for a batch of rows: returns (h', c')."""
    h, c = state
    i, f, g, o = _gate_inputs(x_t, _or(recurrent_input, h), weights, 4)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_next = f * c + i * g
    h_next = o * torch.tanh(c_next)
    w_hr = weights[4]
    if w_hr is not None:
        # Projection maps the hidden size H down to P; c stays at size H.
        h_next = h_next @ w_hr.T
    return h_next, c_next


def gru_cell(x_t, state, weights, recurrent_input=None):
    """One GRU step: returns (h',). b_hn stays inside r * (W_hn h + b_hn)."""
    (h,) = state
    w_ih, w_hh, b_ih, b_hh, _ = weights
    x_r, x_z, x_n = _affine(x_t, w_ih, b_ih).chunk(3, dim=1)
    h_r, h_z, h_n = _affine(_or(recurrent_input, h), w_hh, b_hh).chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


def rnn_cell(x_t, state, weights, recurrent_input=None, *, nonlinearity):
    """One Elman RNN step: returns (h',) with h' = tanh or relu of the sum."""
    (h,) = state
    (pre,) = _gate_inputs(x_t, _or(recurrent_input, h), weights, 1)
    return (torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre),)


def recurrent_layer(cell, x, state, weights, reverse=False, batch_sizes=None,
                    regularization=None):
    """Run `cell` over the steps of one layer in one direction."""
    steps = _split_steps(x, batch_sizes)
    order = range(len(steps) - 1, -1, -1) if reverse else range(len(steps))
    reg = regularization or Regularization()
    # Zoneout masks have one row per input row: split like the input.
    zoneout_masks = [_split_steps(m, batch_sizes) if m is not None else None
                     for m in (reg.zoneout_mask, reg.cell_zoneout_mask)]
    outputs = [None] * len(steps)
    for t in order:
        x_t = steps[t]
        live = x_t.shape[0]
        # Only the first `live` sequences have a step t. The rest keep their
        # state: finished sequences (forward) keep their final state, and
        # not-yet-started ones (reverse) keep the initial state.
        previous = tuple(s[:live] for s in state)
        recurrent_input = None
        if reg.recurrent_mask is not None:
            recurrent_input = (previous[0] * reg.recurrent_mask[:live]
                               / (1 - reg.recurrent_dropout))
        new_state = cell(x_t, previous, weights, recurrent_input)
        probabilities = (reg.zoneout, reg.cell_zoneout)
        new_state = tuple(
            _zoneout(new, old, masks[t] if masks is not None else None, p)
            for new, old, masks, p in zip(new_state, previous, zoneout_masks, probabilities))
        state = tuple(torch.cat([new, old[live:]]) for new, old in zip(new_state, state))
        outputs[t] = new_state[0]
    y = torch.stack(outputs) if batch_sizes is None else torch.cat(outputs)
    return y, state


rnn_tanh_cell = functools.partial(rnn_cell, nonlinearity="tanh")
rnn_relu_cell = functools.partial(rnn_cell, nonlinearity="relu")
lstm_layer = functools.partial(recurrent_layer, lstm_cell)
gru_layer = functools.partial(recurrent_layer, gru_cell)
rnn_tanh_layer = functools.partial(recurrent_layer, rnn_tanh_cell)
rnn_relu_layer = functools.partial(recurrent_layer, rnn_relu_cell)


def _zoneout(new, previous, keep_previous, p):
    """Zoneout of one state: in training the previous value where the mask is
    True; in eval (no mask) the expectation."""
    if keep_previous is not None:
        return torch.where(keep_previous, previous, new)
    if p > 0:
        return p * previous + (1 - p) * new
    return new


def _or(value, default):
    return default if value is None else value


def _affine(x, weight, bias):
    return x @ weight.T if bias is None else x @ weight.T + bias


def _gate_inputs(x_t, h, weights, gates):
    """The pre-activations W_ih x + b_ih + W_hh h + b_hh, split per gate
    (gate blocks are stacked along dim 0 of the weights)."""
    w_ih, w_hh, b_ih, b_hh, _ = weights
    return (_affine(x_t, w_ih, b_ih) + _affine(h, w_hh, b_hh)).chunk(gates, dim=1)


def _split_steps(x, batch_sizes):
    """Split the input into a list of per-time-step row blocks.

    Dense input gives T blocks of B rows. Packed data stores step t as the
    next batch_sizes[t] rows, so splitting by batch_sizes slices exactly the
    live sequences of each step without any padding.
    """
    if batch_sizes is None:
        return list(x.unbind(0))
    return list(torch.split(x, batch_sizes.tolist()))


# ---- Layer-normalized cells (Ba et al. 2016, as haste's LayerNormLSTM) ----
#
# Their `weights` tuple is the plain one followed by the layer norms' gains
# and biases:
#     (w_ih, w_hh, b_ih, b_hh, w_hr, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b)
# ln_ih_* and ln_hh_* are G*H long (one normalization over the whole gate
# row of the input and of the recurrent side), ln_c_* are H long (the
# LSTM's cell state before its tanh); the GRU has no ln_c (None, None).
# LN(v) = (v - mean(v)) / sqrt(var(v) + eps) * gain + bias over the row, with
# the biased variance, which is F.layer_norm.


def _layer_norm(v, gain, bias, eps):
    return torch.nn.functional.layer_norm(v, v.shape[-1:], gain, bias, eps)


def layernorm_lstm_cell(x_t, state, weights, recurrent_input=None, *, eps):
    """One layer-normalized LSTM step: returns (h', c').

        pre = LN_ih(W_ih x + b_ih) + LN_hh(W_hh h + b_hh)   (each over the 4H row)
        i, f, o = sigmoid, g = tanh of pre's blocks (gate order i, f, g, o)
        c' = f * c + i * g                   (the state carried: not normalized)
        h' = o * tanh(LN_c(c'))              (then W_hr (.) with a projection)
    """
    h, c = state
    w_ih, w_hh, b_ih, b_hh, w_hr, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b = weights
    pre = (_layer_norm(_affine(x_t, w_ih, b_ih), ln_ih_w, ln_ih_b, eps)
           + _layer_norm(_affine(_or(recurrent_input, h), w_hh, b_hh), ln_hh_w, ln_hh_b, eps))
    i, f, g, o = pre.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_next = f * c + i * g
    h_next = o * torch.tanh(_layer_norm(c_next, ln_c_w, ln_c_b, eps))
    if w_hr is not None:
        h_next = h_next @ w_hr.T
    return h_next, c_next


def layernorm_gru_cell(x_t, state, weights, recurrent_input=None, *, eps):
    """One layer-normalized GRU step: returns (h',).

        gx = LN_ih(W_ih x + b_ih), gh = LN_hh(W_hh h + b_hh)   (each over the 3H row)
        r = sigmoid(gx_r + gh_r), z = sigmoid(gx_z + gh_z)
        n = tanh(gx_n + r * gh_n)
        h' = (1 - z) * n + z * h
    """
    (h,) = state
    w_ih, w_hh, b_ih, b_hh, _, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, _, _ = weights
    x_r, x_z, x_n = _layer_norm(_affine(x_t, w_ih, b_ih), ln_ih_w, ln_ih_b, eps).chunk(3, dim=1)
    h_r, h_z, h_n = _layer_norm(_affine(_or(recurrent_input, h), w_hh, b_hh),
                                ln_hh_w, ln_hh_b, eps).chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


def layernorm_lstm_layer(x, state, weights, reverse=False, batch_sizes=None,
                         regularization=None, *, eps):
    """One layer-normalized LSTM layer in one direction (the layer interface)."""
    cell = functools.partial(layernorm_lstm_cell, eps=eps)
    return recurrent_layer(cell, x, state, weights, reverse, batch_sizes, regularization)


def layernorm_gru_layer(x, state, weights, reverse=False, batch_sizes=None,
                        regularization=None, *, eps):
    """One layer-normalized GRU layer in one direction (the layer interface)."""
    cell = functools.partial(layernorm_gru_cell, eps=eps)
    return recurrent_layer(cell, x, state, weights, reverse, batch_sizes, regularization)
