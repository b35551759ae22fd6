"""The reference LSTM, driven by run_stack, must match torch.nn.LSTM exactly
(outputs, final states and all gradients), dense and packed."""

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from fusedrnn import reference
from fusedrnn.stack import run_stack

T, B, I, H = 6, 4, 5, 6


def grouped_weights(lstm):
    """Weight tuples (w_ih, w_hh, b_ih, b_hh, w_hr) indexed by layer * D + direction."""
    num_directions = 2 if lstm.bidirectional else 1
    groups = [{} for _ in range(lstm.num_layers * num_directions)]
    for name in lstm._flat_weights_names:
        kind, tag = name.rsplit("_l", 1)  # "weight_ih_l1_reverse" -> "weight_ih", "1_reverse"
        layer = int(tag.split("_")[0])
        direction = 1 if tag.endswith("_reverse") else 0
        groups[layer * num_directions + direction][kind] = getattr(lstm, name)
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    return [tuple(group.get(kind) for kind in kinds) for group in groups]


def run_reference(lstm, x, hx, packed=None):
    """Run the reference stack with the module's weights.

    For packed input, the reference sees sequences in packed (length-sorted)
    order, so hx goes in permuted by sorted_indices and final states come out
    permuted back by unsorted_indices, as nn.LSTM does internally.
    """
    kwargs = dict(num_layers=lstm.num_layers, bidirectional=lstm.bidirectional,
                  dropout=lstm.dropout, training=lstm.training)
    weights = grouped_weights(lstm)
    if packed is None:
        return run_stack(x, hx, weights, reference.lstm_layer, **kwargs)
    sorted_hx = tuple(s.index_select(1, packed.sorted_indices) for s in hx)
    y, final = run_stack(packed.data, sorted_hx, weights, reference.lstm_layer,
                         batch_sizes=packed.batch_sizes, **kwargs)
    return y, tuple(s.index_select(1, packed.unsorted_indices) for s in final)


def make_case(num_layers, bidirectional, bias, proj_size, dtype, dropout=0.0):
    lstm = torch.nn.LSTM(I, H, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                         proj_size=proj_size, dropout=dropout).to(dtype)
    num_directions = 2 if bidirectional else 1
    out_size = proj_size or H
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(num_layers * num_directions, B, out_size, dtype=dtype, requires_grad=True)
    c0 = torch.randn(num_layers * num_directions, B, H, dtype=dtype, requires_grad=True)
    return lstm, x, h0, c0


def random_lengths():
    lengths = torch.randint(1, T + 1, (B,))
    lengths[torch.randint(0, B, ())] = T  # the longest sequence must span all T steps
    return lengths


def weighted_loss(y, states, loss_weights):
    return sum((t * w).sum() for t, w in zip((y, *states), loss_weights))


def check_against_nn(num_layers, bidirectional, bias, proj_size, given_hx, packed, dtype, atol):
    torch.manual_seed(0)
    lstm, x, h0, c0 = make_case(num_layers, bidirectional, bias, proj_size, dtype)
    params = list(lstm.parameters())
    grad_inputs = [x, h0, c0, *params] if given_hx else [x, *params]
    # Without hx, nn.LSTM starts from zeros; the reference needs them spelled out.
    hx = (h0, c0) if given_hx else (torch.zeros_like(h0), torch.zeros_like(c0))
    packed_x = pack_padded_sequence(x, random_lengths(), enforce_sorted=False) if packed else None

    nn_input = packed_x if packed else x
    nn_y, nn_final = lstm(nn_input, (h0, c0)) if given_hx else lstm(nn_input)
    if packed:
        nn_y = nn_y.data
    ref_y, ref_final = run_reference(lstm, x, hx, packed_x)

    loss_weights = [torch.randn_like(t) for t in (nn_y, *nn_final)]
    # Both graphs share the packing op, so keep it alive for the second pass.
    nn_grads = torch.autograd.grad(weighted_loss(nn_y, nn_final, loss_weights), grad_inputs,
                                   retain_graph=True)
    ref_grads = torch.autograd.grad(weighted_loss(ref_y, ref_final, loss_weights), grad_inputs)

    torch.testing.assert_close(ref_y, nn_y, atol=atol, rtol=0)
    for ref_state, nn_state in zip(ref_final, nn_final):
        torch.testing.assert_close(ref_state, nn_state, atol=atol, rtol=0)
    for ref_grad, nn_grad in zip(ref_grads, nn_grads):
        torch.testing.assert_close(ref_grad, nn_grad, atol=atol, rtol=0)


CONFIGS = list(itertools.product([1, 2], [False, True], [False, True], [0, 2], [False, True], [False, True]))


@pytest.mark.parametrize("num_layers,bidirectional,bias,proj_size,given_hx,packed", CONFIGS)
def test_matches_nn_lstm_float64(num_layers, bidirectional, bias, proj_size, given_hx, packed):
    check_against_nn(num_layers, bidirectional, bias, proj_size, given_hx, packed,
                     dtype=torch.float64, atol=1e-10)


# nn.LSTM's CPU float32 path warns that oneDNN lacks projections; that is expected here.
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("packed", [False, True])
def test_matches_nn_lstm_float32(packed):
    check_against_nn(2, True, True, 2, True, packed, dtype=torch.float32, atol=1e-5)


def test_dropout_in_eval_mode_matches_nn():
    torch.manual_seed(1)
    lstm, x, h0, c0 = make_case(2, True, True, 0, torch.float64, dropout=0.5)
    lstm.eval()
    with torch.no_grad():
        nn_y, nn_final = lstm(x, (h0, c0))
        ref_y, ref_final = run_reference(lstm, x, (h0, c0))
    torch.testing.assert_close(ref_y, nn_y, atol=1e-10, rtol=0)
    for ref_state, nn_state in zip(ref_final, nn_final):
        torch.testing.assert_close(ref_state, nn_state, atol=1e-10, rtol=0)


@pytest.mark.parametrize("packed", [False, True])
def test_full_dropout_in_training_zeroes_second_layer_input(packed):
    torch.manual_seed(2)
    lstm, x, h0, c0 = make_case(2, True, True, 2, torch.float64, dropout=1.0)
    lstm.train()
    packed_x = pack_padded_sequence(x, random_lengths(), enforce_sorted=False) if packed else None
    with torch.no_grad():
        ref_y, ref_final = run_reference(lstm, x, (h0, c0), packed_x)
        expected_y, expected_final = second_layer_on_zero_input(lstm, x, (h0, c0), packed_x)
        # p=1 makes dropout deterministic (all zeros), so nn.LSTM is comparable too.
        nn_y, nn_final = lstm(packed_x if packed else x, (h0, c0))
    torch.testing.assert_close(ref_y, expected_y, atol=1e-10, rtol=0)
    for ref_state, expected in zip(ref_final, expected_final):
        torch.testing.assert_close(ref_state[2:], expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(ref_y, nn_y.data if packed else nn_y, atol=1e-10, rtol=0)
    for ref_state, nn_state in zip(ref_final, nn_final):
        torch.testing.assert_close(ref_state, nn_state, atol=1e-10, rtol=0)


def second_layer_on_zero_input(lstm, x, hx, packed_x):
    """Layer 2 (both directions) of a 2-layer bidirectional stack fed zeros instead of layer 1's output."""
    weights = grouped_weights(lstm)
    layer2_width = 2 * (lstm.proj_size or lstm.hidden_size)
    if packed_x is None:
        batch_sizes, zeros = None, x.new_zeros(T, B, layer2_width)
        hx = tuple(s[2:] for s in hx)
    else:
        batch_sizes = packed_x.batch_sizes
        zeros = x.new_zeros(packed_x.data.shape[0], layer2_width)
        hx = tuple(s[2:].index_select(1, packed_x.sorted_indices) for s in hx)

    outputs, finals = [], []
    for direction in (0, 1):
        state = tuple(s[direction] for s in hx)
        y, final = reference.lstm_layer(zeros, state, weights[2 + direction], direction == 1, batch_sizes)
        outputs.append(y)
        finals.append(final)
    final_hx = tuple(torch.stack(kind) for kind in zip(*finals))
    if packed_x is not None:
        final_hx = tuple(s.index_select(1, packed_x.unsorted_indices) for s in final_hx)
    return torch.cat(outputs, dim=-1), final_hx
