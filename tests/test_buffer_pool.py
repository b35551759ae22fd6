"""The CPU ops' large buffers come from a pool that recycles them across
calls (csrc/cpu/buffer_pool.h): a repeated call should not fault in fresh
pages for them, and recycled memory must never leak old values into
results."""
import sys

import pytest
import torch

import fusedrnn  # noqa: F401  (loads the ops)
from op_inputs import lstm_layer_args

resource = pytest.importorskip("resource")


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts Linux page faults")
def test_repeated_calls_do_not_fault_in_their_buffers():
    torch.manual_seed(0)
    T, B, I, H = 50, 32, 256, 256
    args = lstm_layer_args(torch.float32, T=T, B=B, I=I, H=H, requires_grad=False)
    forward = torch.ops.fusedrnn.lstm_layer_forward
    with torch.no_grad():
        forward(*args, False)
        before = _minor_faults()
        forward(*args, False)
        faults = _minor_faults() - before
    # gates (T*B, 4H), output and cells (T*B, H) in float32: 10 MB.
    pages = T * B * 6 * H * 4 // 4096
    assert faults < pages // 5, (faults, pages)


def test_recycled_buffers_give_the_same_results():
    """A call whose buffers held another call's values computes exactly
    what a call on fresh memory computes."""
    torch.manual_seed(0)
    args = lstm_layer_args(torch.float32, T=20, B=16, I=64, H=128, requires_grad=False)
    other = lstm_layer_args(torch.float32, T=20, B=16, I=64, H=128, requires_grad=False)
    forward = torch.ops.fusedrnn.lstm_layer_forward
    first = forward(*args, False)
    first = [t.clone() for t in first]
    for _ in range(3):
        forward(*other, False)
        again = forward(*args, False)
        for a, b in zip(first, again, strict=True):
            assert torch.equal(a, b)
