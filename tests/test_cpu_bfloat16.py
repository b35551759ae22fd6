"""The bfloat16 CPU kernels (AVX512_BF16 dot products, float32 sums and cell
math): accuracy against float64, the modules' use of them, autocast.

Every comparison gives the float64 reference the same bfloat16 weights and
inputs, so that only the computation differs. The kernels round what they
store in bfloat16 (each step's h, the gate gradients); the bounds leave
room for that and nothing more: a kernel that summed in bfloat16, or
dropped the odd last k of a pair, misses them by far.

Skipped where this CPU lacks AVX512_BF16 (the modules then compute bfloat16
in float32, which test_ops checks).
"""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from helpers import CELLS, OpRecorder, twin_modules

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["cpu_bfloat16"],
                                reason="this CPU has no AVX512_BF16")

# Largest error allowed relative to the largest reference value (at least
# 1): outputs and final states, then gradients, or 1.5 times torch.nn's
# own bfloat16 error where that is larger. Measured: 2e-3 to 6e-3 (nn:
# 3e-3 to 1e-2), but 0.12 for a ReLU RNN's gradients (nn: 0.13).
OUT_BOUND, GRAD_BOUND = 2e-2, 4e-2
OP_NAMES = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def _input(T, B, I, packed):
    x = torch.randn(T, B, I).to(torch.bfloat16)
    if not packed:
        return x
    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T
    return pack_padded_sequence(x, lengths, enforce_sorted=False)


def _run_and_grad(module, x):
    """Outputs and the gradients of a fixed random weighting of them with
    respect to the input and every parameter, as float64."""
    packed = isinstance(x, torch.nn.utils.rnn.PackedSequence)
    data = (x.data if packed else x).detach().clone().requires_grad_(True)
    x_in = x._replace(data=data) if packed else data
    output, final = module(x_in)
    outputs = [output.data if packed else output,
               *(final if isinstance(final, tuple) else (final,))]
    generator = torch.Generator().manual_seed(1234)
    loss = sum((t.double() * torch.randn(t.shape, generator=generator,
                                         dtype=torch.float64)).sum()
               for t in outputs)
    grads = torch.autograd.grad(loss, [data, *module.parameters()])
    return [t.double() for t in outputs], [g.double() for g in grads]


def _relative_errors(actual, expected):
    return [((a - e).abs().max() / max(1.0, e.abs().max().item())).item()
            for a, e in zip(actual, expected, strict=True)]


def _float64_twin(module):
    """`module` in float64 as torch.nn, with the same (bfloat16) weights."""
    nn_class = CELLS[module.mode][0]
    kwargs = dict(num_layers=module.num_layers, bias=module.bias,
                  bidirectional=module.bidirectional, dtype=torch.float64)
    if module.mode == "LSTM":
        kwargs["proj_size"] = module.proj_size
    if module.mode.startswith("RNN_"):
        kwargs["nonlinearity"] = module.nonlinearity
    twin = nn_class(module.input_size, module.hidden_size, **kwargs)
    twin.load_state_dict({k: v.double() for k, v in module.state_dict().items()})
    return twin


@pytest.mark.parametrize("B", [75, 20], ids=["per_step", "team"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("mode", list(CELLS))
def test_modules_match_float64(mode, packed, B):
    torch.manual_seed(0)
    # Odd sizes: I = 37 is an odd depth (the last k pairs with zero), 4H = 172
    # and 3H = 129 leave narrow panels, T*B = 7*75 = 525 rows span two depth
    # blocks of the weight gradients and end odd. At B = 20 the time loops
    # run as a team (cpu/team_loops.h, at most 32 rows), at 75 a parallel
    # region per step.
    T, I, H = 7, 37, 43
    theirs, ours = twin_modules(mode, I, H, num_layers=2, bidirectional=True,
                                dtype=torch.bfloat16)
    x = _input(T, B, I, packed)
    with OpRecorder() as recorder:
        actual, actual_grads = _run_and_grad(ours, x)
    assert recorder.names.count(f"fusedrnn.{OP_NAMES[mode]}_layer_forward") == 4
    reference = _float64_twin(ours)
    x64 = x._replace(data=x.data.double()) if packed else x.double()
    expected, expected_grads = _run_and_grad(reference, x64)
    errors = _relative_errors(actual, expected)
    grad_errors = _relative_errors(actual_grads, expected_grads)
    # torch.nn's own bfloat16 error, for scale: a ReLU RNN's gradient flips
    # wherever rounding moves a pre-activation across 0, and there both
    # reach about 0.12 (ours a little less).
    nn_outputs, nn_grads = _run_and_grad(theirs, x)
    nn_error = max(_relative_errors(nn_outputs, expected))
    nn_grad_error = max(_relative_errors(nn_grads, expected_grads))
    context = f"fusedrnn {errors} / grads {grad_errors}; torch.nn {nn_error} / {nn_grad_error}"
    assert max(errors) <= max(OUT_BOUND, 1.5 * nn_error), context
    assert max(grad_errors) <= max(GRAD_BOUND, 1.5 * nn_grad_error), context


@pytest.mark.parametrize("mode", list(CELLS))
def test_few_rows_match_float64(mode):
    """Fewer than 16 rows in all (a step of a small batch): the weights are
    read in place by the few-row kernels instead of packed."""
    torch.manual_seed(0)
    kwargs = dict(proj_size=5) if mode == "LSTM" else {}
    ours = CELLS[mode][1](37, 43, num_layers=2, dtype=torch.bfloat16,
                          **CELLS[mode][2], **kwargs)
    x = _input(3, 2, 37, packed=False)
    with OpRecorder() as recorder:
        actual, actual_grads = _run_and_grad(ours, x)
    assert recorder.names.count(f"fusedrnn.{OP_NAMES[mode]}_layer_forward") == 2
    expected, expected_grads = _run_and_grad(_float64_twin(ours), x.double())
    assert max(_relative_errors(actual, expected)) <= OUT_BOUND
    assert max(_relative_errors(actual_grads, expected_grads)) <= GRAD_BOUND


@pytest.mark.parametrize("proj_size", [5, 16])
def test_projected_lstm_matches_float64(proj_size):
    torch.manual_seed(0)
    ours = fusedrnn.LSTM(9, 67, proj_size=proj_size, num_layers=2,
                         dtype=torch.bfloat16)
    x = _input(6, 13, 9, packed=False)
    actual, actual_grads = _run_and_grad(ours, x)
    expected, expected_grads = _run_and_grad(_float64_twin(ours), x.double())
    assert max(_relative_errors(actual, expected)) <= OUT_BOUND
    assert max(_relative_errors(actual_grads, expected_grads)) <= GRAD_BOUND


def test_the_op_takes_bfloat16_and_keeps_float32_for_the_backward():
    torch.manual_seed(0)
    lstm = fusedrnn.LSTM(4, 5, dtype=torch.bfloat16)
    x = torch.randn(3, 2, 4, dtype=torch.bfloat16)
    w_ih, w_hh, b_ih, b_hh = lstm._flat_weights
    h0 = torch.zeros(2, 5, dtype=torch.bfloat16)
    y, h_n, c_n, gates, cells = torch.ops.fusedrnn.lstm_layer_forward(
        x, h0, h0, w_ih, w_hh, b_ih, b_hh, None, None, False)
    assert (y.dtype, h_n.dtype, c_n.dtype) == (torch.bfloat16,) * 3
    assert gates.dtype == cells.dtype == torch.float32
    with pytest.raises(RuntimeError, match="expected saved of dtype Float"):
        torch.ops.fusedrnn.lstm_layer_backward(
            y, None, None, x, h0, h0, w_ih, w_hh, None, None, y, gates.bfloat16(),
            cells, False)


def test_same_bits_on_every_run():
    torch.manual_seed(0)
    lstm = fusedrnn.LSTM(32, 48, num_layers=2, dtype=torch.bfloat16)
    x = _input(9, 20, 32, packed=False)
    first, first_grads = _run_and_grad(lstm, x)
    second, second_grads = _run_and_grad(lstm, x)
    for a, b in zip(first + first_grads, second + second_grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_autocast_runs_the_layers_like_nn(mode):
    """Under CPU autocast to bfloat16 torch.nn runs its LSTM and RNN in
    bfloat16, and so do ours, on the bfloat16 kernels; its GRU stays in
    float32, and so does ours. The parameters stay float32 and get float32
    gradients."""
    torch.manual_seed(0)
    theirs, ours = twin_modules(mode, 6, 10, num_layers=2, dtype=torch.float32)
    x = torch.randn(5, 3, 6, requires_grad=True)
    with OpRecorder() as recorder, torch.autocast("cpu", dtype=torch.bfloat16):
        actual, _ = ours(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, _ = theirs(x)
    forward = [args for name, args in recorder.calls
               if name == f"fusedrnn.{OP_NAMES[mode]}_layer_forward"]
    assert len(forward) == 2
    assert all(args[0].dtype == expected.dtype for args in forward)
    assert actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, atol=3e-2, rtol=3e-2)
    actual.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in ours.parameters())


def test_cells_and_torch_compile_take_bfloat16():
    torch.manual_seed(0)
    cell = fusedrnn.LSTMCell(6, 8, dtype=torch.bfloat16)
    reference = copy.deepcopy(cell).double()
    x = torch.randn(4, 6).to(torch.bfloat16)
    h, c = cell(x)
    h64, c64 = reference(x.double())
    assert h.dtype == torch.bfloat16
    assert max(_relative_errors([h.double(), c.double()], [h64, c64])) <= OUT_BOUND
    lstm = fusedrnn.LSTM(6, 8, dtype=torch.bfloat16)
    xs = torch.randn(5, 2, 6).to(torch.bfloat16)
    compiled = torch.compile(lstm, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(xs)[0], lstm(xs)[0], atol=0, rtol=0)
