"""A layer op called with one dense step of a small batch (a token at a time:
stream1, decoding loops, RL policies) runs the cell ops' kernels
(csrc/cpu/cell_step.h, cell_step_backward.h) instead of the layer's path:
the CPU executor's single_step and single_step_backward. Checked here
against the layer's own path on the same step (the same input packed,
which they do not take), against fusedrnn.reference, through the modules
against torch.nn, and with gradcheck."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from fusedrnn.cell_table import CELLS

PLAIN_CELLS = [name for name, cell in CELLS.items() if not cell.norms]
TOLERANCE = {torch.float32: 2e-5, torch.float64: 1e-12, torch.bfloat16: 1e-2}
NO_BFLOAT16 = pytest.mark.skipif(not fusedrnn.build_info()["cpu_bfloat16"],
                                 reason="needs AVX512_BF16")
# Every plain cell in each kernel dtype, at batches the cell kernels take
# (up to 16 rows) and one past them.
STEPS = pytest.mark.parametrize("name, dtype, B", [
    pytest.param(name, dtype, B, id=f"{name}-{str(dtype)[6:]}-B{B}",
                 marks=[NO_BFLOAT16] if dtype == torch.bfloat16 else [])
    for name in PLAIN_CELLS for dtype in TOLERANCE for B in (1, 5, 16, 17)])


def _step_args(name, B, I, H, dtype, bias):
    """A one-step layer call's (input (1, B, I), h0, c0, w_ih, w_hh, b_ih,
    b_hh): the input a time-major view of batch-first storage, h0 a
    transposed view, as a module hands them over."""
    cell = CELLS[name]
    G = cell.gates
    scale = (I + H) ** -0.5

    def make(*shape, scale=1.0):
        return (torch.randn(*shape, dtype=torch.float64) * scale).to(dtype)

    x = make(B, 1, I).transpose(0, 1)
    h0 = make(H, B).t()
    c0 = make(B, H) if cell.cell_state else None
    return (x, h0, c0, make(G * H, I, scale=scale), make(G * H, H, scale=scale),
            make(G * H, scale=scale) if bias else None,
            make(G * H, scale=scale) if bias else None)


def _layer(name):
    return getattr(torch.ops.fusedrnn, f"{name}_layer_forward")


def _layer_backward(name):
    return getattr(torch.ops.fusedrnn, f"{name}_layer_backward")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@STEPS
def test_one_step_matches_the_layer_path_and_the_reference(name, dtype, B, bias):
    """Every output of a dense step (single_step up to 16 rows, the layer's
    path at 17) against the same step packed (always the layer's path), and
    h, c against fusedrnn.reference."""
    torch.manual_seed(B)
    cell = CELLS[name]
    I, H = 40, 33  # ragged against the 16-unit blocks and the vector lanes
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _step_args(name, B, I, H, dtype, bias)
    output, h_n, c_n, saved, cells = _layer(name)(x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                                  None, None, False)
    packed = pack_padded_sequence(x, torch.ones(B, dtype=torch.int64))
    p_output, p_h_n, p_c_n, p_saved, p_cells = _layer(name)(
        packed.data, h0, c0, w_ih, w_hh, b_ih, b_hh, None, packed.batch_sizes, False)

    tolerance = TOLERANCE[dtype]
    assert output.shape == (1, B, H) and h_n.shape == (B, H)
    torch.testing.assert_close(output[0], p_output, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(h_n, p_h_n, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(saved.flatten(0, 1), p_saved, atol=tolerance, rtol=tolerance)
    assert torch.equal(output[0], h_n)
    assert output.data_ptr() != h_n.data_ptr()  # an op's outputs do not alias
    if cell.cell_state:
        torch.testing.assert_close(c_n, p_c_n, atol=tolerance, rtol=tolerance)
        torch.testing.assert_close(cells.flatten(0, 1), p_cells, atol=tolerance,
                                   rtol=tolerance)
    else:
        assert c_n.numel() == 0 and cells.numel() == 0

    wide = [None if t is None else t.double() for t in (x[0], h0, c0, w_ih, w_hh, b_ih, b_hh)]
    states = (wide[1], wide[2]) if cell.cell_state else (wide[1],)
    expected = cell.reference_cell(wide[0], states, (*wide[3:], None))
    for actual, wanted in zip((h_n, c_n), expected):
        torch.testing.assert_close(actual.double(), wanted, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
def test_one_step_modules_match_nn(mode):
    """A 2-layer bidirectional module over one step, batched and unbatched,
    with and without grad: outputs, states and gradients as torch.nn's."""
    torch.manual_seed(0)
    extra = {"nonlinearity": mode[4:].lower()} if mode.startswith("RNN") else {}
    kind = mode[:3] if mode.startswith("RNN") else mode
    theirs = getattr(nn, kind)(7, 9, num_layers=2, bidirectional=True, batch_first=True,
                               **extra)
    ours = getattr(fusedrnn, kind)(7, 9, num_layers=2, bidirectional=True, batch_first=True,
                                   **extra)
    ours.load_state_dict(theirs.state_dict())
    for x in (torch.randn(3, 1, 7), torch.randn(1, 7)):
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                out_theirs, state_theirs = theirs(x)
                out_ours, state_ours = ours(x)
            torch.testing.assert_close(out_ours, out_theirs)
            for a, b in zip(torch.utils._pytree.tree_leaves(state_ours),
                            torch.utils._pytree.tree_leaves(state_theirs)):
                torch.testing.assert_close(a, b)
        loss_theirs = out_theirs.square().sum() + sum(
            s.sum() for s in torch.utils._pytree.tree_leaves(state_theirs))
        loss_ours = out_ours.square().sum() + sum(
            s.sum() for s in torch.utils._pytree.tree_leaves(state_ours))
        grads_theirs = torch.autograd.grad(loss_theirs, list(theirs.parameters()))
        grads_ours = torch.autograd.grad(loss_ours, list(ours.parameters()))
        for a, b in zip(grads_ours, grads_theirs):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", PLAIN_CELLS)
def test_gradcheck_through_a_one_step_layer(name):
    """The layer op's backward from what single_step saved, in float64."""
    torch.manual_seed(1)
    args = [t if t is None else t.detach().clone().requires_grad_()
            for t in _step_args(name, 3, 5, 6, torch.float64, True)]

    def step(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        output, h_n, c_n, _, _ = _layer(name)(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None,
                                              None, False)
        return (output, h_n, c_n) if c0 is not None else (output, h_n)

    assert torch.autograd.gradcheck(step, tuple(args))


@pytest.mark.parametrize("input_grad", [True, False], ids=["input_grad", "no_input_grad"])
@STEPS
def test_one_step_backward_matches_the_layer_path(name, dtype, B, input_grad):
    """Every gradient of a dense step's backward (single_step_backward up to
    16 rows) against the packed step's (the layer's path), with gradients
    at the output and at both final states."""
    torch.manual_seed(B)
    cell = CELLS[name]
    I, H = 40, 33
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _step_args(name, B, I, H, dtype, True)
    output, _, _, saved, cells = _layer(name)(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, None,
                                              False)
    grad_output = torch.randn(1, B, H, dtype=torch.float64).to(dtype)
    grad_h_n = torch.randn(B, H, dtype=torch.float64).to(dtype)
    grad_c_n = torch.randn(B, H, dtype=torch.float64).to(dtype) if cell.cell_state else None
    cells_arg = cells if cell.cell_state else None
    dense = _layer_backward(name)(grad_output, grad_h_n, grad_c_n, x, h0, c0, w_ih, w_hh, None,
                                  None, output, saved, cells_arg, False, input_grad)
    lengths = torch.ones(B, dtype=torch.int64)
    batch_sizes = pack_padded_sequence(x, lengths).batch_sizes
    packed = _layer_backward(name)(grad_output[0], grad_h_n, grad_c_n, x[0], h0, c0, w_ih, w_hh,
                                   None, batch_sizes, output[0], saved[0],
                                   None if cells_arg is None else cells_arg[0], False, input_grad)
    # bfloat16: the step's kernel keeps the gate gradients in float for
    # every product, the layer's path rounds them to bfloat16 first.
    tolerance = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 2e-2}[dtype]
    names = ("input", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "norms")
    for what, ours, theirs in zip(names, dense, packed):
        if what == "input" and input_grad:
            assert ours.shape == x.shape
            ours = ours[0]
        assert ours.shape == theirs.shape, what
        torch.testing.assert_close(ours, theirs, atol=tolerance, rtol=tolerance, msg=what)


@pytest.mark.parametrize("name", PLAIN_CELLS)
def test_opcheck_one_step(name):
    """Schema, fake kernel and autograd registration agree with what the
    one-step route returns, forward and backward."""
    torch.manual_seed(2)
    cell = CELLS[name]
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _step_args(name, 2, 5, 6, torch.float32, True)
    forward_args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, None, False)
    torch.library.opcheck(_layer(name).default, forward_args)
    output, _, _, saved, cells = _layer(name)(*forward_args)
    grads = (torch.randn_like(output), torch.randn_like(h0),
             torch.randn_like(c0) if cell.cell_state else None)
    torch.library.opcheck(_layer_backward(name).default,
                          (*grads, x, h0, c0, w_ih, w_hh, None, None, output, saved,
                           cells if cell.cell_state else None, False))


def test_large_weights_route_the_forward_past_16_rows():
    """With 4 MiB of weights the forward's route takes up to 64 rows, the
    backward's only 16: at 24 rows the layer's backward reads what the
    cell kernel saved. Both against the same step packed."""
    torch.manual_seed(3)
    B, I, H = 24, 512, 512  # 8 MiB of float32 weights
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _step_args("lstm", B, I, H, torch.float32, True)
    dense = _layer("lstm")(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, None, False)
    batch_sizes = torch.tensor([B])
    packed = _layer("lstm")(x[0], h0, c0, w_ih, w_hh, b_ih, b_hh, None, batch_sizes, False)
    for ours, theirs in zip(dense, packed):
        torch.testing.assert_close(ours.reshape(theirs.shape), theirs, atol=2e-5, rtol=2e-5)
    output, _, _, saved, cells = dense
    grads = (torch.randn_like(output), torch.randn_like(h0), torch.randn_like(c0))
    dense_grads = _layer_backward("lstm")(*grads, x, h0, c0, w_ih, w_hh, None, None, output,
                                          saved, cells, False, True)
    packed_grads = _layer_backward("lstm")(grads[0][0], *grads[1:], x[0], h0, c0, w_ih, w_hh,
                                           None, batch_sizes, packed[0], packed[3], packed[4],
                                           False, True)
    for ours, theirs in zip(dense_grads, packed_grads):
        torch.testing.assert_close(ours.reshape(theirs.shape), theirs, atol=1e-4, rtol=1e-4)
