"""Whole-module checkpoints: torch.save(module) and a plain torch.load(path),
whose default is weights_only=True, for every fusedrnn layer and cell."""
import collections

import pytest
import torch
from torch import nn

import fusedrnn

# name -> (build the fusedrnn module directly, build its torch.nn original)
MODULES = {
    "LSTM": (lambda: fusedrnn.LSTM(3, 5, 2, bidirectional=True),
             lambda: nn.LSTM(3, 5, 2, bidirectional=True)),
    "LSTM-proj": (lambda: fusedrnn.LSTM(3, 5, batch_first=True, proj_size=2),
                  lambda: nn.LSTM(3, 5, batch_first=True, proj_size=2)),
    "GRU": (lambda: fusedrnn.GRU(3, 5, bias=False), lambda: nn.GRU(3, 5, bias=False)),
    "RNN-tanh": (lambda: fusedrnn.RNN(3, 5, 2), lambda: nn.RNN(3, 5, 2)),
    "RNN-relu": (lambda: fusedrnn.RNN(3, 5, nonlinearity="relu"),
                 lambda: nn.RNN(3, 5, nonlinearity="relu")),
    "LSTMCell": (lambda: fusedrnn.LSTMCell(3, 5), lambda: nn.LSTMCell(3, 5)),
    "GRUCell": (lambda: fusedrnn.GRUCell(3, 5), lambda: nn.GRUCell(3, 5)),
    "RNNCell-relu": (lambda: fusedrnn.RNNCell(3, 5, nonlinearity="relu"),
                     lambda: nn.RNNCell(3, 5, nonlinearity="relu")),
}


def _build(name, how):
    direct, original = MODULES[name]
    return direct() if how == "direct" else fusedrnn.convert(original())


def _outputs(module):
    """Every tensor the module returns on a fixed input, flattened."""
    cell = isinstance(module, nn.RNNCellBase)
    batch_first = getattr(module, "batch_first", False)
    shape = (4, 3) if cell else ((2, 4, 3) if batch_first else (4, 2, 3))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        result = module(x)
    flat = []
    for item in result if isinstance(result, tuple) else (result,):
        flat.extend(item if isinstance(item, tuple) else (item,))
    return flat


def _plain_data(value):
    """Whether `value` is what torch's weights_only unpickler rebuilds without
    an allowlist entry: tensors and plain containers of plain values."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple, set)):
        return all(_plain_data(item) for item in value)
    if isinstance(value, (dict, collections.OrderedDict)):
        return all(_plain_data(k) and _plain_data(v) for k, v in value.items())
    return False


@pytest.mark.parametrize("how", ["direct", "convert"])
@pytest.mark.parametrize("name", list(MODULES))
def test_save_and_plain_load_give_the_same_module(name, how, tmp_path):
    torch.manual_seed(0)
    module = _build(name, how).eval()
    expected = _outputs(module)
    torch.save(module, tmp_path / "model.pt")

    loaded = torch.load(tmp_path / "model.pt")  # weights_only=True, torch's default

    assert type(loaded) is type(module)
    assert loaded.extra_repr() == module.extra_repr() and not loaded.training
    for actual, wanted in zip(_outputs(loaded), expected, strict=True):
        torch.testing.assert_close(actual, wanted, atol=0, rtol=0)


@pytest.mark.parametrize("name", list(MODULES))
def test_instance_state_is_plain_data(name):
    # What keeps the checkpoints loadable: no functions, partials or other
    # objects in a module's own attributes (weakrefs are dropped by
    # nn.RNNBase when it pickles).
    module = _build(name, "convert")
    state = {key: value for key, value in vars(module).items()
             if key not in ("_modules", "_flat_weight_refs")}
    assert {key for key, value in state.items() if not _plain_data(value)} == set()


class Tagger(nn.Module):
    """A user's model (pickled by reference, so defined at module level)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.rnn = fusedrnn.GRU(4, 6, batch_first=True, bidirectional=True)
        self.head = nn.Linear(12, 3)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])


def test_a_model_holding_fusedrnn_layers(tmp_path):
    torch.manual_seed(0)
    model = Tagger().eval()
    tokens = torch.randint(0, 10, (2, 5))
    expected = model(tokens)
    torch.save(model, tmp_path / "model.pt")
    # torch does not allowlist its own layers, nor the model's class: that
    # is the user's call, with the same API fusedrnn uses for its own.
    with torch.serialization.safe_globals([Tagger, nn.Embedding, nn.Linear]):
        loaded = torch.load(tmp_path / "model.pt")
    assert type(loaded.rnn) is fusedrnn.GRU
    torch.testing.assert_close(loaded(tokens), expected, atol=0, rtol=0)


def test_the_reference_switch_survives_a_checkpoint(tmp_path):
    from bench.cells import reference_twin

    module = reference_twin(nn.LSTM(3, 5))
    torch.save(module, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt")
    assert loaded._force_reference is True


@pytest.mark.parametrize("name", list(MODULES))
def test_state_dict_moves_between_fusedrnn_and_nn(name):
    direct, original = MODULES[name]
    torch.manual_seed(0)
    ours, theirs = direct().eval(), original().eval()
    theirs.load_state_dict(ours.state_dict())
    for a, b in zip(_outputs(theirs), _outputs(ours), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)

    again = direct().eval()
    again.load_state_dict(theirs.state_dict())
    for a, b in zip(_outputs(again), _outputs(ours), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
