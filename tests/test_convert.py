"""fusedrnn.convert and fusedrnn.revert."""
import torch
from torch import nn

import fusedrnn


def _model():
    return nn.Sequential(nn.Linear(3, 4),
                         nn.LSTM(4, 6, 2, batch_first=True, dropout=0.0, bidirectional=True))


def test_convert_shares_parameters_and_keeps_the_optimizer_working():
    torch.manual_seed(0)
    model = _model()
    reference = _model()
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [id(p) for p in model.parameters()]

    converted = fusedrnn.convert(model)
    assert converted is model
    assert type(model[1]) is fusedrnn.LSTM
    assert [id(p) for p in model.parameters()] == before

    x = torch.randn(2, 5, 3)
    for net, opt in ((model, optimizer),
                     (reference, torch.optim.SGD(reference.parameters(), lr=0.1))):
        opt.zero_grad()
        net(x)[0].square().sum().backward()
        opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_convert_keeps_mode_dtype_and_configuration():
    lstm = nn.LSTM(4, 6, 3, bias=False, dropout=0.5, proj_size=2, dtype=torch.float64).eval()
    fused = fusedrnn.convert(lstm)
    assert isinstance(fused, fusedrnn.LSTM) and not fused.training
    assert fused.weight_hr_l0.dtype == torch.float64
    assert fused.extra_repr() == lstm.extra_repr()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    torch.testing.assert_close(fused(x)[0], lstm(x)[0], atol=1e-10, rtol=1e-10)


def test_model_without_rnn_is_unchanged():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert fusedrnn.convert(model) is model
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])


def test_revert_round_trip():
    model = _model()
    params = [id(p) for p in model.parameters()]
    fusedrnn.convert(model)
    fusedrnn.revert(model)
    assert type(model[1]) is nn.LSTM
    assert [id(p) for p in model.parameters()] == params
    model(torch.randn(2, 5, 3))  # the reverted nn.LSTM runs


def test_convert_gru_and_rnn():
    model = nn.ModuleDict({"gru": nn.GRU(3, 4), "rnn": nn.RNN(3, 4, 2, "relu", bias=False)})
    x = torch.randn(5, 2, 3)
    expected = [model["gru"](x)[0], model["rnn"](x)[0]]
    fusedrnn.convert(model)
    assert type(model["gru"]) is fusedrnn.GRU and type(model["rnn"]) is fusedrnn.RNN
    assert model["rnn"].nonlinearity == "relu" and not model["rnn"].bias
    for actual, e in zip([model["gru"](x)[0], model["rnn"](x)[0]], expected):
        torch.testing.assert_close(actual, e, atol=1e-5, rtol=1e-5)


def test_convert_cells():
    model = nn.ModuleList([nn.LSTMCell(3, 4), nn.GRUCell(3, 4), nn.RNNCell(3, 4, nonlinearity="relu")])
    params = [id(p) for p in model.parameters()]
    fusedrnn.convert(model)
    assert [type(m) for m in model] == [fusedrnn.LSTMCell, fusedrnn.GRUCell, fusedrnn.RNNCell]
    assert model[2].nonlinearity == "relu"
    assert [id(p) for p in model.parameters()] == params
    fusedrnn.revert(model)
    assert [type(m) for m in model] == [nn.LSTMCell, nn.GRUCell, nn.RNNCell]
