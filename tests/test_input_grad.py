"""The backward skips the input's gradient when the input needs none (the
first layer over raw features), and the initial states' when they need none
(zeros, or states carried over detached): the backward op is told so, and
the other gradients do not change."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from helpers import CELLS, OpRecorder, random_hx, twin_modules
from op_inputs import lstm_layer_args


def _backward_calls(module, x):
    with OpRecorder() as recorder:
        output, _ = module(x)
        output.sum().backward()
    return [args for name, args in recorder.calls if name.endswith("_layer_backward")]


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_input_without_grad_skips_its_gradient(mode):
    torch.manual_seed(0)
    _, ours = twin_modules(mode, 4, 5, 2, dtype=torch.float32)
    x = torch.randn(6, 3, 4)
    calls = _backward_calls(ours, x)
    # Layer 1's input is layer 0's output, which needs a gradient; layer 0's
    # input is data. (The dispatcher drops an argument equal to its default,
    # input_grad=True.)
    input_grad = [args[14] if len(args) > 14 else True for args in reversed(calls)]
    assert input_grad == [False, True]
    without = [p.grad.clone() for p in ours.parameters()]
    ours.zero_grad()
    _backward_calls(ours, x.clone().requires_grad_(True))
    for a, e in zip(without, (p.grad for p in ours.parameters())):
        torch.testing.assert_close(a, e, atol=0, rtol=0)


def test_opcheck_backward_without_input_grad():
    torch.manual_seed(0)
    args = lstm_layer_args(torch.float32, packed=True, proj=2, B=4, requires_grad=False)
    y, h_n, c_n, saved, cells = torch.ops.fusedrnn.lstm_layer_forward(*args, False)
    x, h0, c0, w_ih, w_hh, _, _, w_hr, batch_sizes = args
    backward = torch.ops.fusedrnn.lstm_layer_backward.default
    grads = backward(torch.randn_like(y), None, None, x, h0, c0, w_ih, w_hh, w_hr,
                     batch_sizes, y, saved, cells, False, False)
    assert grads[0].numel() == 0
    full = backward(torch.randn_like(y), None, None, x, h0, c0, w_ih, w_hh, w_hr,
                    batch_sizes, y, saved, cells, False, True)
    assert full[0].shape == x.shape
    torch.library.opcheck(backward, (torch.randn_like(y), None, None, x, h0, c0, w_ih, w_hh,
                                     w_hr, batch_sizes, y, saved, cells, False, False))


def _loss_and_grads(module, x, hx, seed, lengths=None):
    """A random weighting of every output (the same for the same seed), and
    the gradients of the input, the parameters and, where they need one, the
    initial states. The seed also fixes the regularizers' masks. With
    `lengths`, x is packed first."""
    torch.manual_seed(seed)
    output, final = module(_maybe_packed(x, lengths), hx)
    if lengths is not None:
        output = output.data
    outputs = [output, *(final if isinstance(final, tuple) else (final,))]
    loss = sum((t * torch.randn_like(t)).sum() for t in outputs)
    states = hx if isinstance(hx, tuple) else (hx,)
    leaves = [x, *module.parameters(), *(t for t in states if t is not None and t.requires_grad)]
    return torch.autograd.grad(loss, leaves)


def _maybe_packed(x, lengths):
    return x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)


def _state_grad_flags(module, x, hx, lengths=None):
    with OpRecorder() as recorder:
        output, _ = module(_maybe_packed(x, lengths), hx)
        (output.data if lengths is not None else output).sum().backward()
    # (The dispatcher drops an argument equal to its default, state_grad=True.)
    return [args[15] if len(args) > 15 else True
            for name, args in recorder.calls if name.endswith("_layer_backward")]


# Batch 2 runs the team loops, 12 the cell-step kernel at T=1 and the layer's
# loop at T=5, 40 the layer's loop; packed, the reversed direction starts
# rows from h0 in the middle of its steps, where the rows that continue must
# still get their gradient through W_hh.
@pytest.mark.parametrize("variant", ["LSTM", "LSTM-proj", "GRU", "RNN_TANH", "LSTM-dropout"])
@pytest.mark.parametrize("batch", [2, 12, 40])
@pytest.mark.parametrize("steps,packed", [(1, False), (5, False), (5, True)],
                         ids=["T1", "dense", "packed"])
def test_states_without_grad_skip_their_gradient(variant, batch, steps, packed):
    torch.manual_seed(0)
    mode = "GRU" if variant == "GRU" else "RNN_TANH" if variant == "RNN_TANH" else "LSTM"
    kwargs = {"LSTM-proj": dict(proj_size=3),
              "LSTM-dropout": dict(recurrent_dropout=0.3, zoneout=0.2)}.get(variant, {})
    _, fused_class, cell_kwargs = CELLS[mode]
    ours = fused_class(4, 7, 2, bidirectional=True, dtype=torch.float64, **cell_kwargs,
                       **kwargs)
    x = torch.randn(steps, batch, 4, dtype=torch.float64, requires_grad=True)
    lengths = None
    if packed:
        lengths = torch.randint(1, steps + 1, (batch,))
        lengths[0] = steps
    hx = random_hx(ours, batch, dtype=torch.float64)
    detached = hx
    wanting = (tuple(t.clone().requires_grad_() for t in hx) if isinstance(hx, tuple)
               else hx.clone().requires_grad_())
    # Two layers, two directions: four backward calls.
    assert _state_grad_flags(ours, x, detached, lengths) == [False] * 4
    assert _state_grad_flags(ours, x, wanting, lengths) == [True] * 4
    # The same gradients, bit for bit, with the states' skipped or not.
    skipped = _loss_and_grads(ours, x, detached, 1, lengths)
    full = _loss_and_grads(ours, x, wanting, 1, lengths)
    assert len(full) == len(skipped) + (2 if mode == "LSTM" else 1)
    for a, e in zip(skipped, full):
        torch.testing.assert_close(a, e, atol=0, rtol=0)


def test_states_without_grad_match_nn():
    torch.manual_seed(0)
    theirs, ours = twin_modules("LSTM", 5, 6, 2, dtype=torch.float64)
    x = torch.randn(1, 24, 5, dtype=torch.float64, requires_grad=True)
    expected = _loss_and_grads(theirs, x, None, 2)
    actual = _loss_and_grads(ours, x, None, 2)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)


def test_opcheck_backward_without_state_grad():
    torch.manual_seed(0)
    args = lstm_layer_args(torch.float32, packed=True, proj=2, B=4, requires_grad=False)
    y, h_n, c_n, saved, cells = torch.ops.fusedrnn.lstm_layer_forward(*args, True)
    x, h0, c0, w_ih, w_hh, _, _, w_hr, batch_sizes = args
    backward = torch.ops.fusedrnn.lstm_layer_backward.default
    grad_y = torch.randn_like(y)
    grads = backward(grad_y, None, None, x, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, saved,
                     cells, True, True, False)
    full = backward(grad_y, None, None, x, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, saved,
                    cells, True, True, True)
    assert grads[1].numel() == 0 and grads[2].numel() == 0
    assert full[1].shape == h0.shape and full[2].shape == c0.shape
    for a, e in zip(grads[3:], full[3:]):
        torch.testing.assert_close(a, e, atol=0, rtol=0)
    torch.library.opcheck(backward, (grad_y, None, None, x, h0, c0, w_ih, w_hh, w_hr,
                                     batch_sizes, y, saved, cells, True, True, False))
