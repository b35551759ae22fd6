"""float64's sigmoid and tanh in the CPU kernels, against torch.nn's.

The kernels evaluate them with their own branch-free exponential
(csrc/cells/activations.h) so that the unit loops vectorise; these tests
hold them to a few ulp of torch's over the whole range of pre-activations,
and the cells' own tests hold the kernels to 1e-10 elsewhere.
"""
import pytest
import torch

from helpers import CELLS, twin_modules

# Magnitudes from where tanh(x) rounds to x, through where sigmoid and tanh
# round to 1, to where e^x overflows; both signs, and the boundaries of the
# kernels' branches (2^-27, where tanh returns x; 22, where it clamps).
_MAGNITUDES = torch.cat([torch.logspace(-12, 2.85, 400, dtype=torch.float64),
                         torch.tensor([2.0 ** -27, 2.0 ** -26, 21.9, 22.1, 709.7, 709.79],
                                      dtype=torch.float64)])
VALUES = torch.cat([_MAGNITUDES, -_MAGNITUDES])


@pytest.mark.parametrize("mode", list(CELLS))
@pytest.mark.parametrize("batch", [1, 40])
def test_gates_match_nn_to_a_few_ulp(mode, batch):
    """With zero weights every gate of unit j computes its bias, VALUES[j]
    (the LSTM's c then holds sigmoid * tanh, and h tanh of that). One step
    at batch 1 runs the cell-step kernel, at batch 40 the layer's loop."""
    theirs, ours = twin_modules(mode, 1, len(VALUES))
    for module in (theirs, ours):
        with torch.no_grad():
            for p in module.parameters():
                p.zero_()
            gates = module.bias_ih_l0.shape[0] // len(VALUES)
            module.bias_ih_l0.copy_(VALUES.repeat(gates))
    x = torch.zeros(1, batch, 1, dtype=torch.float64)
    with torch.no_grad():
        expected, expected_state = theirs(x)
        actual, actual_state = ours(x)
    # Two ulp near 1, and values near 0 relative to their size, except the
    # GRU's: its h = (1 - z) n is summed in another order than torch.nn's,
    # which the absolute tolerance covers.
    torch.testing.assert_close(actual, expected, rtol=2e-15, atol=4e-16)
    torch.testing.assert_close(actual_state, expected_state, rtol=2e-15, atol=4e-16)
