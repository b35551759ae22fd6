"""The CPU's team loops (csrc/cpu/team_loops.h): at a batch of at most 32
rows a plain layer runs its whole forward and backward time loop in one
parallel region, each thread owning the same hidden units throughout.

Sizes are chosen so that the team has two workers at two threads (a step's
multiply-adds over 2 * 65536) with a unit count that splits unevenly over
blocks of 16, and one worker at the smallest size; WIDE_SIZES have batches
above four rows, whose packed forward splits a step's grid of rows and
64-unit slices inside a slice (grid_shares.h) and whose in-place sums take
the rows four at a time (5 rows, 3 steps). The float32 and bfloat16
loops read W_hh in place for a few rows in all and packed for the tile
kernels from 16 rows on (matmul/packed_multiply.h: kMinRowsToPack), so
those tests run both: STEPS gives each batch fewer and more rows than that."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn
from helpers import twin_modules

# mode, batch, hidden: two workers at two threads, then one.
SIZES = [("LSTM", 1, 200), ("GRU", 2, 200), ("RNN_TANH", 4, 200),
         ("RNN_RELU", 4, 200), ("LSTM", 3, 17)]

WIDE_SIZES = [("LSTM", 20, 200), ("GRU", 13, 70), ("RNN_TANH", 5, 200)]

# Time steps: below and above 16 rows in all at every batch of SIZES.
STEPS = [3, 17]


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _run(module, x, hx):
    output, state = module(x, hx)
    if isinstance(output, torch.nn.utils.rnn.PackedSequence):
        output = pad_packed_sequence(output)[0]
    states = state if isinstance(state, tuple) else (state,)
    return output, states


def _grads(module, x, hx, seed):
    """Outputs, final states and every gradient (parameters, input, hx) of
    a loss mixing all outputs with fixed random weights."""
    states = hx if isinstance(hx, tuple) else (hx,)
    inputs = [x.data if hasattr(x, "batch_sizes") else x, *states]
    output, states = _run(module, x, hx)
    generator = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum()
               for t in (output, *states))
    grads = torch.autograd.grad(loss, [*module.parameters(), *inputs])
    return [output, *states, *grads]


def _inputs(module, T, B, I, dtype, packed):
    torch.manual_seed(1)
    layers = module.num_layers * (2 if module.bidirectional else 1)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    hx = [torch.randn(layers, B, module.hidden_size, dtype=dtype, requires_grad=True)]
    if module.mode == "LSTM":
        hx.append(torch.randn(layers, B, module.hidden_size, dtype=dtype, requires_grad=True))
    if packed:
        # Unsorted lengths: the reverse direction's sequences start at
        # different steps, some rows from the initial state mid-loop.
        lengths = torch.tensor([[T, 2, T - 1, 1][b % 4] for b in range(B)])
        x = pack_padded_sequence(x, lengths, enforce_sorted=False)
    return x, tuple(hx) if module.mode == "LSTM" else hx[0]


@pytest.mark.parametrize("mode,B,H", SIZES + WIDE_SIZES)
@pytest.mark.parametrize("packed", [False, True])
def test_team_loops_match_torch_nn(two_threads, mode, B, H, packed):
    theirs, ours = twin_modules(mode, 24, H, num_layers=2, bidirectional=True)
    x, hx = _inputs(ours, 6, B, 24, torch.float64, packed)
    expected = _grads(theirs, x, hx, seed=2)
    actual = _grads(ours, x, hx, seed=2)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("mode,B,H", SIZES[:3] + WIDE_SIZES)
@pytest.mark.parametrize("T", STEPS)
def test_team_loops_float32(two_threads, mode, B, H, T):
    theirs, ours = twin_modules(mode, 24, H, dtype=torch.float32)
    x, hx = _inputs(ours, T, B, 24, torch.float32, packed=False)
    for a, e in zip(_grads(ours, x, hx, seed=3), _grads(theirs, x, hx, seed=3)):
        torch.testing.assert_close(a, e, atol=2e-4, rtol=2e-4)


@pytest.mark.skipif("bfloat16" not in fusedrnn.build_info()["cpu_dtypes"],
                    reason="this CPU runs no bfloat16 kernels")
@pytest.mark.parametrize("mode,B,H", SIZES[:2])
@pytest.mark.parametrize("T", STEPS)
def test_team_loops_bfloat16_match_the_reference(two_threads, mode, B, H, T):
    _, ours = twin_modules(mode, 24, H, dtype=torch.bfloat16)
    x, hx = _inputs(ours, T, B, 24, torch.bfloat16, packed=False)
    actual = _grads(ours, x, hx, seed=4)
    ours._force_reference = True
    expected = _grads(ours, x, hx, seed=4)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.float(), e.float(), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("mode,B,H", SIZES[:3] + WIDE_SIZES)
@pytest.mark.parametrize("T", STEPS)
def test_team_loops_give_the_same_bits_at_any_thread_count(mode, B, H, T):
    """Each value of the loops is summed by one worker in the order of its
    units and gates, whichever worker that is. (The input's gradient is
    left out: it is a BLAS product after the loop, whose blocking follows
    the thread count.)"""
    _, ours = twin_modules(mode, 24, H, dtype=torch.float32)
    x, hx = _inputs(ours, T, B, 24, torch.float32, packed=True)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(_grads(ours, x, hx, seed=5))
    finally:
        torch.set_num_threads(previous)
    # _grads ends with the gradients of x, then of each initial state.
    input_grad = -(len(hx) if isinstance(hx, tuple) else 1) - 1
    del results[0][input_grad], results[1][input_grad]
    for a, e in zip(*results):
        assert torch.equal(a, e)


def test_team_loops_propagate_nan(two_threads):
    theirs, ours = twin_modules("LSTM", 24, 200)
    x, hx = _inputs(ours, 4, 1, 24, torch.float64, packed=False)
    with torch.no_grad():
        ours.weight_hh_l0[3, 5] = float("nan")
        theirs.weight_hh_l0[3, 5] = float("nan")
    actual, expected = _grads(ours, x, hx, seed=6), _grads(theirs, x, hx, seed=6)
    for a, e in zip(actual, expected):
        assert torch.equal(a.isnan(), e.isnan())
