"""The float32 multiplies (csrc/cpu/matmul*, csrc/cpu/whole_multiply*),
through the LSTM layer ops.

float32 runs fusedrnn's own packed kernels where the CPU has them, float64
always runs BLAS, so float32 results are checked against the float64 results
of the same (float32-representable) inputs. The shapes aim at the kernels'
edges: weight widths 4H and P that are not multiples of the 64-column panel
or the 16-float vector, batches that split into uneven row tiles (and more
rows than one row block), and depths above one depth block (K > 512).
"""
import pytest
import torch

import fusedrnn  # noqa: F401  (loads the ops)
from op_inputs import lstm_layer_args

# (T, B, I, H, proj): batches of 1, 7, 13 and 200 rows (at least
# kMinRowsToPack = 16 rows in all, or the weights are not packed); H = 5, 17, 67 and
# 261 give 4H = 20, 68, 268 and 1044 columns (partial vectors and panels).
# The backward's depth 4H = 1044 exceeds one depth block; projections of 5,
# 33 and 16 are the W_hr multiplies' N. The multiplies outside the time loop
# (whole_multiply) see M = T*B or 4H rows: 600 rows (T5-B120) and 4H = 268
# or 1044 are cut into a part per thread, the weight gradients' depth T*B =
# 600 spans two depth blocks, and I = 70 leaves a 6-column panel.
SHAPES = [(20, 1, 4, 5, 0), (4, 7, 3, 17, 0), (4, 13, 6, 67, 0),
          (3, 200, 5, 17, 0), (3, 13, 8, 261, 0), (4, 7, 3, 17, 5),
          (4, 13, 6, 67, 33), (20, 1, 4, 67, 16), (5, 120, 70, 67, 0)]
SHAPE_IDS = [f"T{T}-B{B}-I{I}-H{H}" + (f"-P{P}" if P else "")
             for T, B, I, H, P in SHAPES]
RTOL = ATOL = 1e-5


def float64_and_float32_args(T, B, I, H, proj, packed):
    """The op's arguments in float64, with values a float32 holds exactly,
    and the same arguments in float32. Weights are scaled as nn.LSTM's are,
    so that not every gate saturates."""
    torch.manual_seed(0)
    x, h0, c0, *weights, batch_sizes = lstm_layer_args(
        torch.float64, T=T, B=B, I=I, H=H, proj=proj, packed=packed,
        requires_grad=False)
    weights = [None if w is None else w * H ** -0.5 for w in weights]
    args64 = [None if t is None else t.float().double()
              for t in (x, h0, c0, *weights)] + [batch_sizes]
    args32 = [None if t is None else t.float() for t in args64[:-1]] + [batch_sizes]
    return args64, args32


def assert_all_close(actual, expected):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e.float(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_forward_float32_matches_float64(shape, reverse, packed):
    args64, args32 = float64_and_float32_args(*shape, packed)
    ops = torch.ops.fusedrnn
    assert_all_close(ops.lstm_layer_forward(*args32, reverse),
                     ops.lstm_layer_forward(*args64, reverse))


@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_backward_float32_matches_float64(shape, packed):
    """The backward multiplies by W_hh and W_hr untransposed: the other
    packing order."""
    results = []
    for args in float64_and_float32_args(*shape, packed):
        x, h0, c0, w_ih, w_hh, _, _, w_hr, batch_sizes = args
        y, h_n, c_n, gates, cells = torch.ops.fusedrnn.lstm_layer_forward(*args, False)
        generator = torch.Generator().manual_seed(1)
        dy, dh, dc = (torch.randn(t.shape, generator=generator).to(t.dtype)
                      for t in (y, h_n, c_n))
        results.append(torch.ops.fusedrnn.lstm_layer_backward(
            dy, dh, dc, x, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, gates, cells,
            False))
    expected, actual = results
    assert_all_close(actual, expected)
