"""The nn.LSTM contract: constructor, parameters, state_dict, inputs, errors."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fusedrnn
from helpers import random_hx, run_and_grad, twin_lstms, twin_modules


def _raises_like_nn(make_call, error, message):
    """The call raises `error` with exactly `message`, in nn and in fusedrnn."""
    for cls in (nn.LSTM, fusedrnn.LSTM):
        with pytest.raises(error) as info:
            make_call(cls)
        assert str(info.value) == message, cls


@pytest.mark.parametrize("args,kwargs,error,message", [
    ((10, 0), {}, ValueError, "hidden_size must be greater than zero"),
    ((0, 20), {}, ValueError, "input_size must be greater than zero"),
    ((10, 20, 0), {}, ValueError, "num_layers must be greater than zero"),
    ((10, 20.0), {}, TypeError, "hidden_size should be of type int, got: float"),
    ((10, 20), {"bias": 1}, TypeError, "bias should be of type bool, got: int"),
    ((10, 20), {"batch_first": 1}, TypeError, "batch_first should be of type bool, got: int"),
    ((10, 20), {"dropout": 1.5}, ValueError, "dropout should be a number in range [0, 1] "
     "representing the probability of an element being zeroed"),
    ((10, 20), {"dropout": True}, ValueError, "dropout should be a number in range [0, 1] "
     "representing the probability of an element being zeroed"),
    ((10, 20), {"proj_size": 20}, ValueError, "proj_size has to be smaller than hidden_size"),
    ((10, 20), {"proj_size": -1}, ValueError,
     "proj_size should be a positive integer or zero to disable projections"),
])
def test_constructor_errors(args, kwargs, error, message):
    _raises_like_nn(lambda cls: cls(*args, **kwargs), error, message)


def test_dropout_warning_like_nn():
    message = ("dropout option adds dropout after all but last recurrent layer, so non-zero "
               "dropout expects num_layers greater than 1, but got dropout=0.5 and num_layers=1")
    with pytest.warns(UserWarning, match=message):
        fusedrnn.LSTM(10, 20, dropout=0.5)


@pytest.mark.parametrize("kwargs", [{}, {"bias": False}, {"num_layers": 3, "bidirectional": True},
                                    {"proj_size": 5, "num_layers": 2}])
def test_parameters_and_state_dict_both_ways(kwargs):
    ours = fusedrnn.LSTM(10, 20, **kwargs)
    theirs = nn.LSTM(10, 20, **kwargs)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
           [(n, p.shape) for n, p in theirs.named_parameters()]
    assert ours._flat_weights_names == theirs._flat_weights_names
    ours.load_state_dict(theirs.state_dict(), strict=True)
    back = nn.LSTM(10, 20, **kwargs)
    back.load_state_dict(ours.state_dict(), strict=True)
    for (_, a), (_, b) in zip(back.named_parameters(), theirs.named_parameters()):
        assert torch.equal(a, b)


def test_attributes_and_repr_like_nn():
    ours = fusedrnn.LSTM(10, 20, 2, batch_first=True, dropout=0.25, bidirectional=True)
    theirs = nn.LSTM(10, 20, 2, batch_first=True, dropout=0.25, bidirectional=True)
    for name in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "dropout", "bidirectional", "proj_size"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.extra_repr() == theirs.extra_repr()
    assert isinstance(ours, nn.RNNBase) and not isinstance(ours, nn.LSTM)
    ours.flatten_parameters()  # harmless


def test_forward_errors_like_nn():
    x = torch.randn(5, 3, 10)

    def call(input, hx=None):
        return lambda cls: cls(10, 20)(input, hx)

    _raises_like_nn(call(torch.randn(5, 3, 10, 1)), ValueError,
                    "LSTM: Expected input to be 2D or 3D, got 4D instead")
    _raises_like_nn(call(torch.randn(5, 3, 11)), RuntimeError,
                    "input.size(-1) must be equal to input_size. Expected 10, got 11")
    _raises_like_nn(call(x.double()), ValueError,
                    "RNN input dtype (torch.float64) does not match weight dtype "
                    "(torch.float32). Convert input: input.to(torch.float32), "
                    "or convert model: model.to(torch.float64)")
    _raises_like_nn(call(x, (torch.randn(3, 20), torch.randn(3, 20))), RuntimeError,
                    "For batched 3-D input, hx and cx should also be 3-D but got "
                    "(2-D, 2-D) tensors")
    _raises_like_nn(call(torch.randn(5, 10), (torch.randn(1, 1, 20), torch.randn(1, 1, 20))),
                    RuntimeError, "For unbatched 2-D input, hx and cx should also be 2-D "
                    "but got (3-D, 3-D) tensors")
    _raises_like_nn(call(x, (torch.randn(1, 4, 20), torch.randn(1, 3, 20))), RuntimeError,
                    "Expected hidden[0] size (1, 3, 20), got [1, 4, 20]")
    _raises_like_nn(call(x, (torch.randn(1, 3, 20), torch.randn(1, 4, 20))), RuntimeError,
                    "Expected hidden[1] size (1, 3, 20), got [1, 4, 20]")
    _raises_like_nn(call(torch.randn(0, 3, 10)), RuntimeError,
                    "Expected sequence length to be larger than 0 in RNN")


@pytest.mark.parametrize("batch_first", [False, True])
def test_batch_size_zero(batch_first):
    theirs, ours = twin_lstms(4, 5, 2, bidirectional=True, batch_first=batch_first)
    x = torch.randn((0, 3, 4) if batch_first else (3, 0, 4), dtype=torch.float64,
                    requires_grad=True)
    expected = theirs(x)
    output, (h_n, c_n) = ours(x)
    assert output.shape == expected[0].shape
    assert h_n.shape == expected[1][0].shape and c_n.shape == expected[1][1].shape
    output.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input(batch_first):
    torch.manual_seed(0)
    theirs, ours = twin_lstms(4, 5, 2, bidirectional=True, batch_first=batch_first)
    x = torch.randn(6, 4, dtype=torch.float64)
    for hx in (None, random_hx(ours, 1, unbatched=True)):
        expected, expected_grads = run_and_grad(theirs, x, hx)
        actual, actual_grads = run_and_grad(ours, x, hx)
        for a, e in zip(actual + actual_grads, expected + expected_grads):
            torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10)


def test_non_contiguous_input_and_states():
    torch.manual_seed(0)
    theirs, ours = twin_lstms(4, 5, 2, bidirectional=True)
    x = torch.randn(3, 6, 4, dtype=torch.float64).transpose(0, 1)  # (6, 3, 4), strided
    h0 = torch.randn(3, 4, 5, dtype=torch.float64).transpose(0, 1)[:, ::1]  # (4, 3, 5)
    c0 = torch.randn(4, 5, 3, dtype=torch.float64).permute(0, 2, 1)  # (4, 3, 5)
    assert not (x.is_contiguous() or h0.is_contiguous() or c0.is_contiguous())
    expected, expected_grads = run_and_grad(theirs, x, (h0, c0))
    actual, actual_grads = run_and_grad(ours, x, (h0, c0))
    for a, e in zip(actual + actual_grads, expected + expected_grads):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("proj_size", [0, 3])
def test_packed_sequence_like_nn(proj_size):
    torch.manual_seed(0)
    theirs, ours = twin_lstms(4, 5, 2, bidirectional=True, proj_size=proj_size)
    padded = torch.randn(6, 4, 4, dtype=torch.float64)
    lengths = torch.tensor([3, 6, 1, 4])
    hx = random_hx(ours, 4)
    results = []
    for lstm in (theirs, ours):
        packed = pack_padded_sequence(padded, lengths, enforce_sorted=False)
        output, (h_n, c_n) = lstm(packed, hx)
        results.append((output.data, h_n, c_n))
        assert torch.equal(output.batch_sizes, packed.batch_sizes)
        assert torch.equal(output.unsorted_indices, packed.unsorted_indices)
    for a, e in zip(*results[::-1]):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10)


def test_projection_like_nn():
    torch.manual_seed(0)
    theirs, ours = twin_lstms(4, 5, 2, proj_size=2, batch_first=True)
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    expected, expected_grads = run_and_grad(theirs, x)
    actual, actual_grads = run_and_grad(ours, x)
    for a, e in zip(actual + actual_grads, expected + expected_grads):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    theirs, ours = twin_lstms(4, 5, 3, dropout=0.5)
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    theirs.eval(), ours.eval()
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-10, rtol=1e-10)
    ours.train()
    first = ours(x)[0]
    torch.manual_seed(1)
    second = ours(x)[0]
    assert not torch.allclose(first, second)  # a fresh mask every call
    torch.manual_seed(1)
    torch.testing.assert_close(ours(x)[0], second, atol=0, rtol=0)  # seeded: same mask


def test_deepcopy_and_whole_module_save_load(tmp_path):
    import copy

    torch.manual_seed(0)
    lstm = fusedrnn.LSTM(4, 5, 2, bidirectional=True)
    x = torch.randn(3, 2, 4)
    expected = lstm(x)[0]
    clone = copy.deepcopy(lstm)
    assert clone.weight_ih_l0 is not lstm.weight_ih_l0
    torch.testing.assert_close(clone(x)[0], expected, atol=0, rtol=0)
    torch.save(lstm, tmp_path / "lstm.pt")
    loaded = torch.load(tmp_path / "lstm.pt", weights_only=False)
    assert type(loaded) is fusedrnn.LSTM
    torch.testing.assert_close(loaded(x)[0], expected, atol=0, rtol=0)


def test_dtype_moves_like_nn():
    torch.manual_seed(0)
    theirs, ours = twin_lstms(4, 5, 2, dtype=torch.float32)
    x = torch.randn(3, 2, 4)
    ours.double(), theirs.double()
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    torch.testing.assert_close(ours(x.double())[0], theirs(x.double())[0])
    ours.to(torch.float32), theirs.to(torch.float32)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-5, rtol=1e-5)
    ours.half()
    assert ours(x.half())[0].dtype == torch.float16  # the reference runs float16


def test_functional_call_computes_with_swapped_weights():
    torch.manual_seed(0)
    lstm = fusedrnn.LSTM(4, 5)
    x = torch.randn(3, 2, 4)
    zeros = {name: torch.zeros_like(p) for name, p in lstm.named_parameters()}
    output, (h_n, c_n) = torch.func.functional_call(lstm, zeros, (x,))
    assert torch.count_nonzero(output) == 0 and torch.count_nonzero(c_n) == 0
    assert torch.count_nonzero(lstm(x)[0]) > 0


class _Doubled(nn.Module):
    def forward(self, w):
        return 2 * w


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU])
def test_parametrized_weights_take_effect(cls):
    """A parametrized weight is no longer in the parameter dict; the module
    reads it through its attribute (rnn_base._flat_parameters)."""
    torch.manual_seed(0)
    module = cls(4, 5, num_layers=2)
    plain = cls(4, 5, num_layers=2)
    plain.load_state_dict(module.state_dict())
    with torch.no_grad():
        plain.weight_hh_l1.mul_(2)
    torch.nn.utils.parametrize.register_parametrization(module, "weight_hh_l1", _Doubled())
    x = torch.randn(3, 2, 4)
    torch.testing.assert_close(module(x)[0], plain(x)[0])


def test_reset_parameters_and_all_weights_like_nn():
    ours = fusedrnn.LSTM(4, 16, 2, proj_size=3)
    bound = 1 / 16 ** 0.5
    ours.reset_parameters()
    for p in ours.parameters():
        assert p.abs().max() <= bound
    theirs = nn.LSTM(4, 16, 2, proj_size=3)
    assert [[w.shape for w in layer] for layer in ours.all_weights] == \
           [[w.shape for w in layer] for layer in theirs.all_weights]


def _tensors(result):
    """Every tensor of a module's result, a PackedSequence's data unwrapped."""
    if isinstance(result, PackedSequence):
        return [result.data]
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for part in result for t in _tensors(part)]


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["LSTM", "LSTM-packed", "LSTM-proj", "LSTM-packed-proj",
                                  "GRU", "RNN_TANH", "RNN_RELU-packed", "LSTMCell",
                                  "GRUCell", "RNNCell"])
def test_cpu_autocast_dtype_like_nn(kind, autocast_dtype):
    """torch.nn follows CPU autocast in some layers and cells, not in others
    (fusedrnn._ops._follows_cpu_autocast); the outputs' dtypes say which."""
    torch.manual_seed(0)
    mode, *options = kind.split("-")
    x = torch.randn(4, 3, 6)
    if mode.endswith("Cell"):
        theirs = getattr(nn, mode)(6, 8)
        ours = getattr(fusedrnn, mode)(6, 8)
        ours.load_state_dict(theirs.state_dict())
        x = x[0]
    else:
        kwargs = dict(proj_size=3) if "proj" in options else {}
        theirs, ours = twin_modules(mode, 6, 8, dtype=torch.float32, **kwargs)
        if "packed" in options:
            x = pack_padded_sequence(x, torch.tensor([4, 2, 1]))
    with torch.autocast("cpu", dtype=autocast_dtype):
        try:
            expected = theirs(x)
        except RuntimeError:  # oneDNN has no float16 LSTM on some CPUs
            pytest.skip("torch.nn fails here")
        actual = ours(x)
    for a, e in zip(_tensors(actual), _tensors(expected), strict=True):
        assert a.dtype == e.dtype
        torch.testing.assert_close(a.float(), e.float(), atol=3e-2, rtol=3e-2)


def test_autocast_output_dtype_like_nn():
    torch.manual_seed(0)
    theirs, ours = twin_lstms(4, 5, 2, dtype=torch.float32)
    x = torch.randn(3, 2, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = theirs(x)
        actual = ours(x)
    for a, e in zip((actual[0], *actual[1]), (expected[0], *expected[1])):
        assert a.dtype == e.dtype == torch.bfloat16
        torch.testing.assert_close(a, e, atol=2e-2, rtol=2e-2)
    actual[0].float().sum().backward()
    assert x.grad is not None and ours.weight_hh_l1.grad.dtype == torch.float32
