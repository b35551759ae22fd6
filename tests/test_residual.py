"""residual=True: every stacked layer but the first adds its input to its
output; checked against a manual composition of single-layer torch.nn
modules and adds."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_sequence

import fusedrnn
from helpers import CELLS

F64 = torch.float64


def _residual_module(mode, num_layers=3, **kwargs):
    _, fused_class, cell_kwargs = CELLS[mode]
    torch.manual_seed(0)
    return fused_class(4, 4, num_layers, residual=True, dtype=F64, **cell_kwargs, **kwargs)


def _single_layers(module):
    """One single-layer torch.nn module per layer of `module`, holding that
    layer's weights (nn's names, with _l{k} renamed _l0)."""
    nn_class, _, cell_kwargs = CELLS[module.mode]
    directions = 2 if module.bidirectional else 1
    width = directions * (module.proj_size or module.hidden_size)
    layers = []
    for k in range(module.num_layers):
        kwargs = dict(bias=module.bias, bidirectional=module.bidirectional, dtype=F64,
                      **cell_kwargs)
        if module.proj_size:
            kwargs["proj_size"] = module.proj_size
        layer = nn_class(module.input_size if k == 0 else width, module.hidden_size, **kwargs)
        layer.load_state_dict({name.replace(f"_l{k}", "_l0"): value
                               for name, value in module.state_dict().items()
                               if f"_l{k}" in name})
        layers.append(layer)
    return layers


def _manual(module, x, hx=None, layers=None):
    """The residual stack by hand, on `layers` (default: _single_layers):
    layer k > 0 returns layer(input) + input, and the dropout between layers
    acts on that sum. Returns the output and the final h (per layer and
    direction, stacked like the module's)."""
    lstm = module.mode == "LSTM"
    directions = 2 if module.bidirectional else 1
    finals, layer_input = [], x
    for k, layer in enumerate(layers or _single_layers(module)):
        if k > 0 and module.dropout and module.training:
            layer_input = _map_data(layer_input, lambda d: nn.functional.dropout(
                d, module.dropout, True))
        state = None
        if hx is not None:
            rows = slice(k * directions, (k + 1) * directions)
            state = tuple(s[rows] for s in hx) if lstm else hx[rows]
        output, final = layer(layer_input, state)
        if k > 0:
            output = _map_data(output, lambda d, skip=layer_input: d + _data(skip))
        finals.append(final[0] if lstm else final)
        layer_input = output
    return layer_input, torch.cat(finals)


def _data(x):
    return x.data if isinstance(x, PackedSequence) else x


def _map_data(x, fn):
    if isinstance(x, PackedSequence):
        return PackedSequence(fn(x.data), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    return fn(x)


CASES = [(mode, dict()) for mode in CELLS] + [
    ("LSTM", dict(bidirectional=True)), ("GRU", dict(bidirectional=True, bias=False)),
    ("LSTM", dict(proj_size=2, bidirectional=True))]


@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("mode,kwargs", CASES, ids=[f"{m}-{'-'.join(k)}" for m, k in CASES])
def test_equals_single_layers_and_adds(mode, kwargs, packed):
    module = _residual_module(mode, **kwargs)
    if packed:
        x = pack_sequence([torch.randn(5, 4, dtype=F64), torch.randn(2, 4, dtype=F64),
                           torch.randn(3, 4, dtype=F64)], enforce_sorted=False)
    else:
        x = torch.randn(5, 3, 4, dtype=F64)
    output, final = module(x)
    expected, expected_h = _manual(module, x)
    torch.testing.assert_close(_data(output), _data(expected), atol=1e-10, rtol=1e-10)
    h_n = final[0] if mode == "LSTM" else final
    torch.testing.assert_close(h_n, expected_h, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_gradients_flow_and_match_the_manual_stack(mode):
    module = _residual_module(mode, bidirectional=True, batch_first=False)
    x = torch.randn(5, 3, 4, dtype=F64, requires_grad=True)
    hx = torch.randn(6, 3, 4, dtype=F64, requires_grad=True)
    states = (hx, torch.randn(6, 3, 4, dtype=F64)) if mode == "LSTM" else hx
    weight = torch.randn(5, 3, 8, dtype=F64)

    ours = torch.autograd.grad((module(x, states)[0] * weight).sum(),
                               [x, hx, *module.parameters()])
    layers = _single_layers(module)
    expected_output, _ = _manual(module, x, states, layers)
    # The manual stack holds copies of the weights: their gradients are
    # those of the module's, layer by layer, in the same order.
    theirs = torch.autograd.grad((expected_output * weight).sum(),
                                 [x, hx] + [p for layer in layers for p in layer.parameters()])
    for a, e in zip(ours, theirs, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10)


def test_dropout_acts_on_the_sum():
    module = _residual_module("GRU", dropout=0.5).train()
    x = torch.randn(5, 3, 4, dtype=F64)
    layers = _single_layers(module)  # (built first: building draws random weights)
    torch.manual_seed(3)
    output, _ = module(x)
    torch.manual_seed(3)  # the same dropout masks (the layers draw no random numbers)
    expected, _ = _manual(module, x, layers=layers)
    torch.testing.assert_close(output, expected, atol=1e-10, rtol=1e-10)


def test_default_and_parameters_are_torch_nn():
    plain = fusedrnn.LSTM(4, 4, 2)
    residual = fusedrnn.LSTM(4, 4, 2, residual=True)
    assert plain.residual is False and residual.residual is True
    assert list(residual.state_dict()) == list(nn.LSTM(4, 4, 2).state_dict())
    assert plain.extra_repr() == nn.LSTM(4, 4, 2).extra_repr()
    assert residual.extra_repr().endswith(", residual=True")
    # GRU and RNN take it as a keyword too (RNN after a positional nonlinearity).
    assert fusedrnn.GRU(4, 4, 2, residual=True).residual
    rnn = fusedrnn.RNN(4, 4, 2, "relu", residual=True)
    assert rnn.residual and rnn.nonlinearity == "relu"


def test_sizes_that_differ_are_a_clear_error():
    module = fusedrnn.LSTM(4, 4, 2, residual=True)
    # torch.nn's layout always gives layer k > 0 as many input features as
    # it returns; a swapped-in weight is the only way to make them differ.
    module.weight_ih_l1 = nn.Parameter(torch.randn(16, 3))
    with pytest.raises(ValueError, match="layer 1 takes 3 input features but returns 4"):
        module._check_residual_sizes()


def test_one_layer_warns_that_residual_changes_nothing():
    with pytest.warns(UserWarning, match="num_layers=1"):
        fusedrnn.GRU(4, 4, residual=True)


def test_convert_gives_residual_false_and_revert_refuses_residual():
    model = nn.Sequential(nn.LSTM(4, 4, 2))
    converted = fusedrnn.convert(model)
    assert converted[0].residual is False
    assert type(fusedrnn.revert(converted)[0]) is nn.LSTM
    with pytest.raises(ValueError, match="residual=True"):
        fusedrnn.revert(nn.Sequential(fusedrnn.LSTM(4, 4, 2, residual=True)))


def test_checkpoint_keeps_the_flag(tmp_path):
    module = _residual_module("LSTM", bidirectional=True).eval()
    x = torch.randn(5, 3, 4, dtype=F64)
    expected = module(x)[0]
    torch.save(module, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert loaded.residual is True and loaded.extra_repr() == module.extra_repr()
    torch.testing.assert_close(loaded(x)[0], expected, atol=0, rtol=0)


def test_a_checkpoint_from_before_residual_loads_as_false(tmp_path):
    module = fusedrnn.GRU(4, 4, 2)
    del module.residual  # what an instance pickled before the attribute existed holds
    torch.save(module, tmp_path / "model.pt")
    assert torch.load(tmp_path / "model.pt", weights_only=True).residual is False


def test_onnx_export_refuses_residual():
    # The ONNX export runs torch.nn's forward, which would drop the adds.
    from fusedrnn.onnx_export import nn_forward

    with pytest.raises(RuntimeError, match="residual=True cannot be exported"):
        nn_forward(fusedrnn.LSTM(4, 4, 2, residual=True), torch.randn(5, 3, 4))
