"""Batch-first input is read in place: the modules hand the layer ops the
time-major view input.transpose(0, 1), whose steps are not one strided
matrix, and the layer function's input projection reads it where it lies
(by sequences, or by steps where there are fewer steps than sequences).

Checked: the modules against torch.nn (float64: outputs and every
gradient), against themselves fed the time-major copy (the same bits where
the tile kernels run), gradcheck through the op, bfloat16 against the
reference, the layer op on inputs of other strides, and, with the
profiler, that no operator copies the input in the forward.
"""
import copy
import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import fusedrnn
from helpers import random_hx, run_and_grad, twin_modules

# The tile kernels (AVX-512) sum each row of a product in one order however
# the rows are cut into blocks; BLAS need not, so the same bits are expected
# only where the kernels run (AVX512_BF16 implies them).
TILE_KERNELS = fusedrnn.build_info()["cpu_bfloat16"]
OPS = torch.ops.fusedrnn


def _module_kwargs(mode, variant):
    if variant == "plain":
        return {}
    if variant == "bidir-2layers":
        return dict(num_layers=2, bidirectional=True)
    return dict(num_layers=2, proj_size=3)


# B = 1 flattens into one matrix; 3 sequences of 7 steps are read a
# sequence at a time, 20 of them a step at a time.
@pytest.mark.parametrize("B", [1, 3, 20])
@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
@pytest.mark.parametrize("mode, variant", [
    ("LSTM", "plain"), ("LSTM", "bidir-2layers"), ("LSTM", "proj"),
    ("GRU", "plain"), ("GRU", "bidir-2layers"),
    ("RNN_TANH", "plain"), ("RNN_RELU", "bidir-2layers")])
def test_matches_torch_nn(mode, variant, with_hx, B):
    torch.manual_seed(0)
    theirs, ours = twin_modules(mode, 5, 4, batch_first=True,
                                **_module_kwargs(mode, variant))
    x = torch.randn(B, 7, 5, dtype=torch.float64)
    hx = random_hx(ours, B) if with_hx else None
    actual_out, actual_grads = run_and_grad(ours, x, hx)
    expected_out, expected_grads = run_and_grad(theirs, x, hx)
    for a, e in zip(actual_out + actual_grads, expected_out + expected_grads, strict=True):
        torch.testing.assert_close(a, e)


def _outputs_and_grads(module, x, hx, batch_first):
    """Output, final states and every gradient of a fixed weighting of the
    outputs, for x (T, B, I) given to the module as a contiguous (B, T, I)
    tensor where batch_first; output and input gradient time-major."""
    x = (x.transpose(0, 1) if batch_first else x).detach().contiguous().requires_grad_(True)
    leaves = [x]
    if hx is not None:
        hx = tuple(s.detach().clone().requires_grad_(True) for s in hx)
        leaves += list(hx)
    module.batch_first = batch_first
    output, final = module(x, None if hx is None else (hx if module.mode == "LSTM" else hx[0]))
    if batch_first:
        output = output.transpose(0, 1)
    final = final if isinstance(final, tuple) else (final,)
    generator = torch.Generator().manual_seed(1234)
    loss = sum((t.double() * torch.randn(t.shape, generator=generator, dtype=torch.float64)).sum()
               for t in (output, *final))
    grads = list(torch.autograd.grad(loss, leaves + list(module.parameters())))
    if batch_first:
        grads[0] = grads[0].transpose(0, 1)
    return [output, *final, *grads]


@pytest.mark.skipif(not TILE_KERNELS, reason="BLAS may sum blocks of rows in other orders")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("T, B", [(9, 4), (3, 12)], ids=["by-sequence", "by-step"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_same_bits_as_time_major(mode, T, B, dtype):
    """The forward's arithmetic does not depend on where the input lies, and
    the backward copies the batch-first input into time-major order for W_ih's
    gradient: every result is the same bits."""
    torch.manual_seed(0)
    _, module = twin_modules(mode, 6, 5, dtype=torch.float32, num_layers=2,
                             bidirectional=True)
    module = module.to(dtype)
    x = torch.randn(T, B, 6).to(dtype)
    hx = tuple(s.to(dtype) for s in _states(random_hx(module, B, dtype=torch.float32)))
    time_major = _outputs_and_grads(module, x, hx, batch_first=False)
    batch_first = _outputs_and_grads(module, x, hx, batch_first=True)
    for a, e in zip(batch_first, time_major, strict=True):
        assert torch.equal(a, e)


def _states(hx):
    return hx if isinstance(hx, tuple) else (hx,)


def _relative_error(actual, expected):
    return ((actual.double() - expected).abs().max() / max(1.0, expected.abs().max().item())).item()


@pytest.mark.skipif("bfloat16" not in fusedrnn.build_info()["cpu_dtypes"],
                    reason="no bfloat16 kernels on this CPU")
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_bfloat16_matches_reference(mode):
    """Bounds of test_cpu_bfloat16.py: outputs 2e-2, gradients 4e-2 of the
    largest reference value."""
    torch.manual_seed(0)
    _, module = twin_modules(mode, 6, 8, dtype=torch.float32, num_layers=2,
                             batch_first=True)
    module = module.to(torch.bfloat16)
    reference = copy.deepcopy(module).double()
    reference._force_reference = True
    x = torch.randn(6, 20, 6).to(torch.bfloat16)
    actual = _outputs_and_grads(module, x, None, batch_first=True)
    expected = _outputs_and_grads(reference, x.double(), None, batch_first=True)
    outputs = 3 if mode == "LSTM" else 2
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert _relative_error(a, e) < (2e-2 if i < outputs else 4e-2)


def _lstm_args(I, H, dtype):
    make = dict(dtype=dtype, requires_grad=True)
    return [torch.randn(4 * H, I, **make), torch.randn(4 * H, H, **make),
            torch.randn(4 * H, **make), torch.randn(4 * H, **make)]


def _batch_first_lstm(base, h0, c0, w_ih, w_hh, b_ih, b_hh):
    y, h_n, c_n, _, _ = OPS.lstm_layer_forward(base.transpose(0, 1), h0, c0, w_ih, w_hh, b_ih,
                                               b_hh, None, None, False)
    return y, h_n, c_n


@pytest.mark.parametrize("B, T", [(3, 6), (5, 4)], ids=["by-sequence", "by-step"])
def test_op_gradcheck(B, T):
    torch.manual_seed(0)
    base = torch.randn(B, T, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_batch_first_lstm,
                                    (base, h0, c0, *_lstm_args(2, 3, torch.float64)))


T_, B_, I_ = 6, 5, 4
# Inputs (T, B, I) of other strides, each a view of a fresh base tensor of
# the given dtype.
STRIDED = {
    "batch-first": lambda d: torch.randn(B_, T_, I_, dtype=d).transpose(0, 1),
    "batch-first, fewer steps": lambda d: torch.randn(8, 3, I_, dtype=d).transpose(0, 1),
    "batch-first, padded rows":
        lambda d: torch.randn(B_, T_, 2 * I_, dtype=d)[..., :I_].transpose(0, 1),
    "every other feature": lambda d: torch.randn(T_, B_, 2 * I_, dtype=d)[..., ::2],
    "batch-first, every other feature":
        lambda d: torch.randn(B_, T_, 2 * I_, dtype=d)[..., ::2].transpose(0, 1),
    "feature-major": lambda d: torch.randn(I_, T_, B_, dtype=d).permute(1, 2, 0),
    "one sequence for all": lambda d: torch.randn(T_, 1, I_, dtype=d).expand(T_, B_, I_),
}


def _op_results(op, x, weights, hx):
    """A layer op's outputs and the gradients of a fixed weighting of them
    with respect to its input and weights."""
    x = x.detach().requires_grad_(True)
    leaves = [x, *weights]
    # The schema: input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes,
    # reverse.
    y, h_n, c_n, _, _ = op(x, *hx, *weights, None, None, False)
    outputs = [y, h_n] + ([c_n] if c_n.numel() else [])
    generator = torch.Generator().manual_seed(1234)
    loss = sum((t.double() * torch.randn(t.shape, generator=generator, dtype=torch.float64)).sum()
               for t in outputs)
    return outputs + list(torch.autograd.grad(loss, leaves))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("layout", list(STRIDED))
def test_op_reads_any_strides(layout, mode, dtype):
    torch.manual_seed(0)
    x = STRIDED[layout](dtype)
    assert not x.is_contiguous()
    T, B, I = x.shape
    H, gates = 3, 4 if mode == "lstm" else 3
    make = dict(dtype=dtype, requires_grad=True)
    weights = [torch.randn(gates * H, I, **make), torch.randn(gates * H, H, **make),
               torch.randn(gates * H, **make), torch.randn(gates * H, **make)]
    h0 = torch.randn(B, H, dtype=dtype)
    hx = (h0, torch.randn(B, H, dtype=dtype)) if mode == "lstm" else (h0, None)
    op = getattr(OPS, f"{mode}_layer_forward")
    actual = _op_results(op, x, weights, hx)
    expected = _op_results(op, x.contiguous(), weights, hx)
    exact = TILE_KERNELS and dtype == torch.float32
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, atol=0 if exact else None, rtol=0 if exact else None)


def test_opcheck_batch_first_view():
    """The fake kernels (_ops.py) give what the kernels return for a strided
    input: contiguous outputs, and a contiguous time-major input gradient."""
    torch.manual_seed(0)
    make = dict(requires_grad=True)
    x = torch.randn(5, 4, 3, **make).transpose(0, 1)
    h0, c0 = torch.randn(5, 2, **make), torch.randn(5, 2, **make)
    weights = (torch.randn(8, 3, **make), torch.randn(8, 2, **make), torch.randn(8, **make),
               torch.randn(8, **make))
    args = (x, h0, c0, *weights, None, None, False)
    torch.library.opcheck(OPS.lstm_layer_forward.default, args)
    y, h_n, c_n, saved, cells = OPS.lstm_layer_forward(*args)
    # The schema: grad_output, grad_h_n, grad_c_n, input, h0, c0, w_ih, w_hh,
    # w_hr, batch_sizes, output, saved, cells, reverse, input_grad.
    backward_args = (torch.randn_like(y), None, None, x.detach(), h0.detach(), c0.detach(),
                     weights[0].detach(), weights[1].detach(), None, None, y.detach(),
                     saved, cells, False, True)
    torch.library.opcheck(OPS.lstm_layer_backward.default, backward_args)
    assert OPS.lstm_layer_backward(*backward_args)[0].is_contiguous()


COPIES = ("copy", "clone", "contiguous")


def _input_sized_copies(run, x):
    """The operators run(x) dispatches that copy (by name) a tensor of x's
    size."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run(x)
    return [(e.name, e.input_shapes) for e in prof.events()
            if any(word in e.name for word in COPIES)
            and any(shape and math.prod(shape) == x.numel() for shape in e.input_shapes)]


def test_copy_detector_sees_a_copy():
    x = torch.randn(20, 30, 7).transpose(0, 1)
    assert _input_sized_copies(lambda x: x.contiguous(), x)


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16],
                         ids=["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("make", [
    lambda **kw: fusedrnn.LSTM(7, 8, num_layers=2, bidirectional=True, **kw),
    lambda **kw: fusedrnn.GRU(7, 8, **kw),
    lambda **kw: fusedrnn.RNN(7, 8, **kw),
    lambda **kw: fusedrnn.LSTM(7, 8, zoneout=0.1, **kw),
    lambda **kw: fusedrnn.LayerNormLSTM(7, 8, **kw),
], ids=["LSTM", "GRU", "RNN", "LSTM-zoneout", "LayerNormLSTM"])
def test_forward_does_not_copy_batch_first_input(make, dtype, grad):
    if dtype not in fusedrnn._ops._KERNEL_DTYPES["cpu"]:
        pytest.skip(f"no {dtype} kernels on this CPU")
    torch.manual_seed(0)
    module = make(batch_first=True, dtype=dtype)
    x = torch.randn(20, 30, 7, dtype=dtype, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        assert _input_sized_copies(module, x) == []
