"""A safety net for refactoring the C++ layer code (csrc/).

The layer functions are about to move and their op schemas to change. These
tests pin down what must survive that move, through the public Python API
only (the modules, the cells, fusedrnn.reference, fusedrnn.convert), never
through torch.ops.fusedrnn.*, whose names and signatures will change:

- parity with torch.nn, forward and backward, at hidden sizes spanning
  several 64-unit slices with a ragged last one (csrc/cpu/matmul.h's
  kUnitSlice), dense and packed, with and without a projection, below and
  above the 16 rows from which the own tile kernels replace BLAS, on 1 and
  2 threads;
- that every module, cell and dtype with a kernel runs it (forward and
  backward), not the reference;
- the GRU and Elman references against torch.nn directly;
- gradient values at batch 0 and under CPU autocast.
"""
import contextlib
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fusedrnn
from fusedrnn import reference
from helpers import CELLS, OpRecorder, random_hx, twin_modules

MODES = list(CELLS)
TOLERANCES = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-4)}
DTYPE_IDS = {torch.float32: "fp32", torch.float64: "fp64", torch.bfloat16: "bf16"}

# nn.LSTM's CPU float32 path warns that oneDNN lacks projections.
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN")


@contextlib.contextmanager
def num_threads(n):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _as_tuple(states):
    return tuple(states) if isinstance(states, tuple) else (states,)


def outputs_and_grads(module, x, hx=None, loss_dtype=None):
    """Outputs (a layer's output or packed data, then its final states; a
    cell's new states) and the gradients of a fixed random weighting of
    them (summed in `loss_dtype`, default theirs) with respect to the input
    (its data when packed), every state of hx and every parameter."""
    packed = isinstance(x, PackedSequence)
    data = (x.data if packed else x).detach().clone().requires_grad_(True)
    x_in = x._replace(data=data) if packed else data
    states = [] if hx is None else [s.detach().clone().requires_grad_(True)
                                    for s in _as_tuple(hx)]
    hx_in = None if hx is None else (tuple(states) if isinstance(hx, tuple) else states[0])
    if isinstance(module, nn.RNNCellBase):
        outputs = list(_as_tuple(module(x_in, hx_in)))
    else:
        output, final = module(x_in, hx_in)
        outputs = [output.data if packed else output, *_as_tuple(final)]
    generator = torch.Generator().manual_seed(1234)
    loss = 0
    for t in outputs:
        dtype = loss_dtype or t.dtype
        loss = loss + (t.to(dtype) * torch.randn(t.shape, generator=generator,
                                                 dtype=dtype)).sum()
    grads = torch.autograd.grad(loss, [data, *states, *module.parameters()])
    return outputs, list(grads)


def assert_all_close(actual, expected, atol, rtol, what):
    assert len(actual) == len(expected), what
    for index, (a, e) in enumerate(zip(actual, expected)):
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol,
                                   msg=lambda m: f"{what} #{index}: {m}")


# ---------------------------------------------------------------------------
# 1 and 3. Parity with torch.nn across unit slices, rows and threads.

# (T, B, packed lengths): 12 dense / 7 packed rows in all stay under the 16
# from which the tile kernels run the multiplies (BLAS runs them instead);
# 32 dense / 20 packed rows are over it. The lengths are unsorted, ragged
# and include a length-1 sequence.
ROWS = {"few_rows": (4, 3, [2, 4, 1]), "many_rows": (8, 4, [5, 8, 1, 6])}
INPUT_SIZE = 5


def _input(T, B, lengths, packed, dtype):
    x = torch.randn(T, B, INPUT_SIZE, dtype=dtype)
    if not packed:
        return x
    return pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)


# variant -> (mode, {hidden size: proj_size}): hidden sizes of 3 and 5
# slices of 64 units, the last one ragged; with a projection both it
# (H -> P) and the recurrent multiply (P -> 4H) span several slices.
PARITY_VARIANTS = {mode: (mode, {130: 0, 257: 0}) for mode in MODES}
PARITY_VARIANTS["LSTM-proj"] = ("LSTM", {130: 67, 257: 129})


def _parity_cases():
    """Every variant, size, row count, layout and dtype on one thread; on
    two (where a step's unit slices are split between the threads) the
    5-slice size in float32, and packed above the row threshold in float64.
    (Two threads on a loaded two-core machine wait on each other at every
    step, so they run the part of the grid that needs them.)"""
    grid = [(variant, hidden, rows, packed, dtype)
            for variant in PARITY_VARIANTS for hidden in (130, 257) for rows in ROWS
            for packed in (False, True) for dtype in (torch.float32, torch.float64)]
    cases = [case + (1,) for case in grid]
    cases += [case + (2,) for case in grid if case[1] == 257 and (
        case[4] == torch.float32 or (case[2] == "many_rows" and case[3]))]
    return [pytest.param(*case, id=f"{case[0]}-H{case[1]}-{case[2]}-"
                                   f"{'packed' if case[3] else 'dense'}-"
                                   f"{DTYPE_IDS[case[4]]}-{case[5]}thread")
            for case in cases]


@pytest.mark.parametrize("variant,hidden,rows,packed,dtype,threads", _parity_cases())
def test_matches_nn_across_unit_slices(variant, hidden, rows, packed, dtype, threads):
    torch.manual_seed(0)
    mode, proj_sizes = PARITY_VARIANTS[variant]
    kwargs = dict(proj_size=proj_sizes[hidden]) if proj_sizes[hidden] else {}
    T, B, lengths = ROWS[rows]
    # All but fusedrnn's run on one thread: the comparisons of the larger
    # gradients would be split in two, and pay for it on a loaded machine.
    with num_threads(1):
        theirs, ours = twin_modules(mode, INPUT_SIZE, hidden, 2, bidirectional=True,
                                    dtype=dtype, **kwargs)
        x = _input(T, B, lengths, packed, dtype)
        hx = random_hx(ours, B, dtype)
        expected, expected_grads = outputs_and_grads(theirs, x, hx)
        with num_threads(threads):
            assert torch.get_num_threads() == threads
            actual, actual_grads = outputs_and_grads(ours, x, hx)
        out_tol, grad_tol = TOLERANCES[dtype]
        assert_all_close(actual, expected, out_tol, out_tol, "outputs")
        assert_all_close(actual_grads, expected_grads, grad_tol, grad_tol, "gradients")


# A step's threads take equal shares of its rows and 64-unit slices
# (matmul/grid_shares.h), as do the multiplies before and after the loop:
# 24 hidden units are one slice, whose rows the two threads split; 72 are a
# slice of 64 and one of 8, and the threads' shares meet inside the first,
# at a row. The batches give every cell's step two shares on two threads.
# Packed, the reversed direction starts rows from h0 in the middle of a
# step, inside a share.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("variant", ["LSTM", "LSTM-proj", "GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("hidden,batch", [(24, 240), (72, 80)], ids=["H24", "H72"])
def test_matches_nn_across_thread_shares(variant, packed, dtype, hidden, batch):
    torch.manual_seed(0)
    mode = "LSTM" if variant == "LSTM-proj" else variant
    kwargs = dict(proj_size=11) if variant == "LSTM-proj" else {}
    T, B = 4, batch
    lengths = torch.randint(1, T + 1, (B,)).tolist()
    with num_threads(1):
        theirs, ours = twin_modules(mode, INPUT_SIZE, hidden, 2, bidirectional=True,
                                    dtype=dtype, **kwargs)
        x = _input(T, B, lengths, packed, dtype)
        hx = random_hx(ours, B, dtype)
        expected, expected_grads = outputs_and_grads(theirs, x, hx)
        with num_threads(2):
            actual, actual_grads = outputs_and_grads(ours, x, hx)
        out_tol, grad_tol = TOLERANCES[dtype]
        assert_all_close(actual, expected, out_tol, out_tol, "outputs")
        assert_all_close(actual_grads, expected_grads, grad_tol, grad_tol, "gradients")


# ---------------------------------------------------------------------------
# 2. Every module, cell and dtype that has a kernel runs it.

KERNEL_DTYPES = [torch.float32, torch.float64] + (
    [torch.bfloat16] if fusedrnn.build_info()["cpu_bfloat16"] else [])
# The reference's per-step math and its autograd formulas: none of them may
# run where the kernel does.
REFERENCE_OPS = ("aten.sigmoid", "aten.tanh", "aten.relu", "aten.sigmoid_backward",
                 "aten.tanh_backward", "aten.threshold_backward")

# name -> (torch.nn layer or cell, constructor arguments, input shape, packed)
KERNEL_CASES = {
    "LSTM": (nn.LSTM, dict(num_layers=2, bidirectional=True), (5, 3), False),
    "LSTM-proj": (nn.LSTM, dict(proj_size=3), (5, 3), False),
    "LSTM-packed": (nn.LSTM, dict(bidirectional=True), (5, 3), True),
    "GRU": (nn.GRU, dict(num_layers=2, bidirectional=True), (5, 3), False),
    "GRU-packed": (nn.GRU, dict(bidirectional=True), (5, 3), True),
    "RNN-tanh": (nn.RNN, dict(nonlinearity="tanh", bidirectional=True), (5, 3), False),
    "RNN-relu": (nn.RNN, dict(nonlinearity="relu", bidirectional=True), (5, 3), False),
    "RNN-relu-packed": (nn.RNN, dict(nonlinearity="relu"), (5, 3), True),
    "LSTMCell": (nn.LSTMCell, {}, (3,), False),
    "GRUCell": (nn.GRUCell, {}, (3,), False),
    "RNNCell-tanh": (nn.RNNCell, dict(nonlinearity="tanh"), (3,), False),
    "RNNCell-relu": (nn.RNNCell, dict(nonlinearity="relu"), (3,), False),
}


def _fused_calls(recorder, direction):
    """The fused ops (fusedrnn.*) recorded whose name says `direction`; a
    cell's one-step op (<cell>_cell_step, the cells' forward on the CPU)
    counts as a forward."""
    return [(name, args) for name, args in recorder.calls
            if name.startswith("fusedrnn.")
            and (direction in name or (direction == "forward" and "_cell_step" in name))]


def _tensor_dtypes(args):
    return {a.dtype for a in args if isinstance(a, torch.Tensor)}


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("name", list(KERNEL_CASES))
def test_runs_the_fused_kernel_forward_and_backward(name, dtype):
    torch.manual_seed(0)
    nn_class, kwargs, batch_shape, packed = KERNEL_CASES[name]
    # Through fusedrnn.convert, as a user would swap them in.
    module = fusedrnn.convert(nn_class(4, 6, dtype=dtype, **kwargs))
    assert type(module).__module__.startswith("fusedrnn.")
    cell = isinstance(module, nn.RNNCellBase)
    x = torch.randn(*batch_shape, 4, dtype=dtype, requires_grad=True)
    x_in = pack_padded_sequence(x, torch.tensor([5, 2, 4]), enforce_sorted=False) \
        if packed else x
    hx = None
    if cell:  # (from h = 0 W_hh would get no gradient)
        hx = torch.randn(3, 6, dtype=dtype)
        hx = (hx, torch.randn_like(hx)) if name == "LSTMCell" else hx
    with OpRecorder() as forward:
        result = module(x_in, hx)
    if cell:
        outputs = _as_tuple(result)
    else:
        output, final = result
        outputs = (output.data if packed else output, *_as_tuple(final))
    loss = sum(t.float().sum() for t in outputs)
    with OpRecorder() as backward:
        grads = torch.autograd.grad(loss, [x, *module.parameters()])

    forward_calls = _fused_calls(forward, "forward")
    assert forward_calls, forward.names
    assert _fused_calls(backward, "backward"), backward.names
    for recorder in (forward, backward):
        assert not set(REFERENCE_OPS) & set(recorder.names), recorder.names
    # The kernel takes the dtype itself (bfloat16 is not run in float32).
    assert all(dtype in _tensor_dtypes(args) for _, args in forward_calls)
    assert all(g.dtype == dtype and g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------------------
# 4. The GRU and Elman references against torch.nn directly (test_reference
# covers the LSTM's): one layer in each direction, dense and packed.

REFERENCE_LAYERS = {"GRU": reference.gru_layer, "RNN_TANH": reference.rnn_tanh_layer,
                    "RNN_RELU": reference.rnn_relu_layer}


def _direction_weights(module, suffix):
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return tuple(getattr(module, f"{n}_l0{suffix}", None) for n in names) + (None,)


def _reference_bidirectional(module, layer, x, h0, lengths):
    """One bidirectional layer of `module` run by the reference layer
    function, as nn runs it: packed input in length order, h0 and h_n
    permuted to and from it."""
    batch_sizes = None
    if lengths is not None:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        x, batch_sizes = packed.data, packed.batch_sizes
        h0 = h0.index_select(1, packed.sorted_indices)
    outputs, finals = [], []
    for direction, suffix in enumerate(("", "_reverse")):
        y, (h_n,) = layer(x, (h0[direction],), _direction_weights(module, suffix),
                          reverse=direction == 1, batch_sizes=batch_sizes)
        outputs.append(y)
        finals.append(h_n)
    h_n = torch.stack(finals)
    if lengths is not None:
        h_n = h_n.index_select(1, packed.unsorted_indices)
    return torch.cat(outputs, dim=-1), h_n


@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", list(REFERENCE_LAYERS))
def test_reference_layers_match_nn_float64(mode, bias, packed):
    torch.manual_seed(0)
    T, B, I, H = 6, 4, 3, 5
    module = CELLS[mode][0](I, H, bias=bias, bidirectional=True, dtype=torch.float64,
                            **CELLS[mode][2])
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, B, H, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 6, 1, 4]) if packed else None
    leaves = [x, h0, *module.parameters()]

    if packed:
        output, expected_h_n = module(pack_padded_sequence(x, lengths, enforce_sorted=False), h0)
        expected = output.data
    else:
        expected, expected_h_n = module(x, h0)
    actual, actual_h_n = _reference_bidirectional(module, REFERENCE_LAYERS[mode], x, h0,
                                                  lengths)
    assert_all_close([actual, actual_h_n], [expected, expected_h_n], 1e-10, 1e-10, "outputs")
    weights = [torch.randn_like(t) for t in (expected, expected_h_n)]
    expected_grads = torch.autograd.grad(
        (expected * weights[0]).sum() + (expected_h_n * weights[1]).sum(), leaves)
    actual_grads = torch.autograd.grad(
        (actual * weights[0]).sum() + (actual_h_n * weights[1]).sum(), leaves)
    assert_all_close(actual_grads, expected_grads, 1e-10, 1e-10, "gradients")


# name -> (nn cell, its constructor arguments, the reference's cell)
NN_CELLS = {
    "LSTMCell": (nn.LSTMCell, {}, reference.lstm_cell),
    "GRUCell": (nn.GRUCell, {}, reference.gru_cell),
    "RNNCell-tanh": (nn.RNNCell, dict(nonlinearity="tanh"), reference.rnn_tanh_cell),
    "RNNCell-relu": (nn.RNNCell, dict(nonlinearity="relu"), reference.rnn_relu_cell),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", list(NN_CELLS))
def test_reference_cells_match_nn_float64(name, bias):
    torch.manual_seed(0)
    nn_class, kwargs, reference_cell = NN_CELLS[name]
    cell = nn_class(3, 5, bias=bias, dtype=torch.float64, **kwargs)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
                  for _ in range(2 if nn_class is nn.LSTMCell else 1))
    leaves = [x, *state, *cell.parameters()]
    expected = _as_tuple(cell(x, state if nn_class is nn.LSTMCell else state[0]))
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, None)
    actual = reference_cell(x, state, weights)
    assert_all_close(actual, expected, 1e-12, 1e-12, "outputs")
    loss_weights = [torch.randn_like(t) for t in expected]
    expected_grads = torch.autograd.grad(
        sum((t * w).sum() for t, w in zip(expected, loss_weights)), leaves)
    actual_grads = torch.autograd.grad(
        sum((t * w).sum() for t, w in zip(actual, loss_weights)), leaves)
    assert_all_close(actual_grads, expected_grads, 1e-12, 1e-12, "gradients")


# ---------------------------------------------------------------------------
# 5a. Batch 0: torch.nn returns empty outputs and states, and gradients that
# are empty for the input and states and zero for every parameter.

@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("with_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("name", ["LSTM", "LSTM-proj", "GRU", "RNN_TANH", "RNN_RELU"])
def test_batch_zero_matches_nn(name, with_hx, dtype):
    torch.manual_seed(0)
    kwargs = dict(proj_size=3) if name == "LSTM-proj" else {}
    theirs, ours = twin_modules(name.split("-")[0], 4, 5, 2, bidirectional=True,
                                dtype=dtype, **kwargs)
    x = torch.randn(3, 0, 4, dtype=dtype)
    hx = random_hx(ours, 0, dtype) if with_hx else None
    expected, expected_grads = outputs_and_grads(theirs, x, hx)
    actual, actual_grads = outputs_and_grads(ours, x, hx)
    parameter_grads = expected_grads[-len(list(theirs.parameters())):]
    assert all(g.numel() > 0 and not g.any() for g in parameter_grads)
    assert_all_close(actual, expected, 0, 0, "outputs")
    assert_all_close(actual_grads, expected_grads, 0, 0, "gradients")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("with_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("name", list(NN_CELLS))
def test_cell_batch_zero_matches_nn(name, with_hx, dtype):
    nn_class, kwargs, _ = NN_CELLS[name]
    torch.manual_seed(0)
    theirs = nn_class(4, 5, dtype=dtype, **kwargs)
    ours = fusedrnn.convert(nn_class(4, 5, dtype=dtype, **kwargs))
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(0, 4, dtype=dtype)
    hx = None
    if with_hx:
        hx = torch.randn(0, 5, dtype=dtype)
        hx = (hx, torch.randn_like(hx)) if nn_class is nn.LSTMCell else hx
    expected, expected_grads = outputs_and_grads(theirs, x, hx)
    actual, actual_grads = outputs_and_grads(ours, x, hx)
    parameter_grads = expected_grads[-len(list(theirs.parameters())):]
    assert all(g.numel() > 0 and not g.any() for g in parameter_grads)
    assert_all_close(actual, expected, 0, 0, "outputs")
    assert_all_close(actual_grads, expected_grads, 0, 0, "gradients")


# ---------------------------------------------------------------------------
# 5b. Gradients under CPU autocast to bfloat16, against torch.nn's under the
# same autocast and against a float64 run.
#
# Bounds as in test_cpu_bfloat16.py: the largest error relative to the
# largest reference value (at least 1), for outputs, then for gradients.
OUT_BOUND, GRAD_BOUND = 2e-2, 4e-2

# name -> (nn class, constructor arguments, packed)
AUTOCAST_CASES = {
    "LSTM": (nn.LSTM, dict(num_layers=2, bidirectional=True), False),
    "LSTM-packed": (nn.LSTM, dict(num_layers=2, bidirectional=True), True),
    "LSTM-proj": (nn.LSTM, dict(num_layers=2, bidirectional=True, proj_size=4), False),
    "GRU": (nn.GRU, dict(num_layers=2, bidirectional=True), False),
    "RNN-tanh": (nn.RNN, dict(num_layers=2, bidirectional=True), False),
    "RNN-relu": (nn.RNN, dict(num_layers=2, bidirectional=True, nonlinearity="relu"), False),
    "RNN-relu-packed": (nn.RNN, dict(num_layers=2, nonlinearity="relu"), True),
    "LSTMCell": (nn.LSTMCell, {}, False),
    "GRUCell": (nn.GRUCell, {}, False),
    "RNNCell-tanh": (nn.RNNCell, dict(nonlinearity="tanh"), False),
    "RNNCell-relu": (nn.RNNCell, dict(nonlinearity="relu"), False),
}


def _relative_errors(actual, expected):
    assert len(actual) == len(expected)
    return [((a.double() - e.double()).abs().max() / max(1.0, e.double().abs().max().item()))
            .item() for a, e in zip(actual, expected)]


def _keep_relu_away_from_zero(module):
    """Weights that keep every pre-activation of a ReLU RNN a few units from
    0 (biases of +-3 by unit, small weights), so that rounding to bfloat16
    flips no unit between on and off: one flip moves a gradient by far more
    than rounding does, for fusedrnn and torch.nn alike."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.startswith("bias_ih"):
                signs = torch.arange(parameter.numel()) % 2 * 2 - 1
                parameter.copy_(3.0 * signs)
            else:
                parameter.mul_(0.3)


@pytest.mark.parametrize("name", list(AUTOCAST_CASES))
def test_autocast_gradients_match_nn(name):
    torch.manual_seed(0)
    nn_class, kwargs, packed = AUTOCAST_CASES[name]
    theirs = nn_class(6, 10, **kwargs)
    if "relu" in name:
        _keep_relu_away_from_zero(theirs)
    ours = fusedrnn.convert(nn_class(6, 10, **kwargs))
    ours.load_state_dict(theirs.state_dict())
    truth = copy.deepcopy(theirs).double()
    cell = isinstance(theirs, nn.RNNCellBase)
    x = torch.randn(3, 6) if cell else torch.randn(5, 3, 6)
    if packed:
        x = pack_padded_sequence(x, torch.tensor([3, 5, 2]), enforce_sorted=False)
    if cell:
        hx = torch.randn(3, 10)
        hx = (hx, torch.randn_like(hx)) if nn_class is nn.LSTMCell else hx
    else:
        hx = random_hx(theirs, 3, torch.float32)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual, actual_grads = outputs_and_grads(ours, x, hx, loss_dtype=torch.float64)
        expected, expected_grads = outputs_and_grads(theirs, x, hx, loss_dtype=torch.float64)
    assert [t.dtype for t in actual] == [t.dtype for t in expected]
    assert [g.dtype for g in actual_grads] == [g.dtype for g in expected_grads]
    # Within bfloat16's error of torch.nn under the same autocast ...
    errors = _relative_errors(actual, expected)
    grad_errors = _relative_errors(actual_grads, expected_grads)
    context = f"against nn: outputs {errors}, gradients {grad_errors}"
    assert max(errors) <= OUT_BOUND and max(grad_errors) <= GRAD_BOUND, context

    # ... and no farther from float64 than torch.nn is, or the bounds.
    x64 = x._replace(data=x.data.double()) if packed else x.double()
    hx64 = tuple(s.double() for s in hx) if isinstance(hx, tuple) else hx.double()
    exact, exact_grads = outputs_and_grads(truth, x64, hx64)
    ours_off = (_relative_errors(actual, exact), _relative_errors(actual_grads, exact_grads))
    nn_off = (_relative_errors(expected, exact), _relative_errors(expected_grads, exact_grads))
    context = f"against float64: fusedrnn {ours_off}, torch.nn {nn_off}"
    assert max(ours_off[0]) <= max(OUT_BOUND, 1.5 * max(nn_off[0])), context
    assert max(ours_off[1]) <= max(GRAD_BOUND, 1.5 * max(nn_off[1])), context
