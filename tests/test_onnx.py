"""torch.onnx.export of models holding fusedrnn layers and cells: ONNX's
standard recurrent nodes, and onnxruntime's results equal to torch's."""
import io
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn
from helpers import OpRecorder

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
onnxruntime = pytest.importorskip("onnxruntime")

TOLERANCE = dict(atol=1e-5, rtol=1e-5)

pytestmark = [
    # torch's exporter warns of its own (and torch.nn's) doings: _flat_weights
    # refreshed while tracing, size checks of its dynamic-shape LSTM path.
    pytest.mark.filterwarnings("ignore:The tensor attributes"),
    pytest.mark.filterwarnings("ignore:_check_is_size:FutureWarning"),
]


class Layer(nn.Module):
    """A layer with an explicit initial state, returning every output."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, hx):
        output, final = self.rnn(x, hx)
        return (output, *final) if isinstance(final, tuple) else (output, final)


class PackedLayer(nn.Module):
    """Padded batch + lengths in, packed through the layer, padded out."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        output, final = self.rnn(packed)
        h_n = final[0] if isinstance(final, tuple) else final
        return pad_packed_sequence(output, total_length=x.size(0))[0], h_n


def _export(model, args, dynamo=True, **kwargs):
    """The ONNX model torch.onnx.export writes for `model`."""
    model.eval()
    if dynamo:
        return torch.onnx.export(model, args, verbose=False, **kwargs).model_proto
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, args, buffer, dynamo=False, **kwargs)
    return onnx.load_from_string(buffer.getvalue())


def _run(onnx_model, *args):
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString())
    names = [i.name for i in session.get_inputs()]
    return [torch.from_numpy(a) for a in
            session.run(None, {name: arg.numpy() for name, arg in zip(names, args)})]


def _op_types(onnx_model):
    return {node.op_type for node in onnx_model.graph.node}


def _initial_state(rnn, batch):
    layers = rnn.num_layers * (2 if rnn.bidirectional else 1)
    h0 = torch.randn(layers, batch, rnn.hidden_size)
    return (h0, torch.randn_like(h0)) if rnn.mode == "LSTM" else h0


LAYERS = {
    "LSTM": (lambda: fusedrnn.LSTM(3, 5, 2, bidirectional=True), "LSTM"),
    "GRU": (lambda: fusedrnn.GRU(3, 5, 2, batch_first=True, bidirectional=True), "GRU"),
    "RNN-tanh": (lambda: fusedrnn.RNN(3, 5, 2, bidirectional=True), "RNN"),
    "RNN-relu": (lambda: fusedrnn.RNN(3, 5, nonlinearity="relu", batch_first=True,
                                      bias=False), "RNN"),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_export_as_standard_nodes(name):
    build, node = LAYERS[name]
    torch.manual_seed(0)
    model = Layer(build())
    x = torch.randn(2, 6, 3) if model.rnn.batch_first else torch.randn(6, 2, 3)
    hx = _initial_state(model.rnn, 2)
    args = (x, *hx) if isinstance(hx, tuple) else (x, hx)
    # torch's exporter has no translation of its own for the Elman RNN.
    table = fusedrnn.onnx_translations() if node == "RNN" else None

    onnx_model = _export(model, (x, hx), custom_translation_table=table)

    assert node in _op_types(onnx_model)
    assert all(n.domain in ("", "ai.onnx") for n in onnx_model.graph.node)  # no custom ops
    for actual, expected in zip(_run(onnx_model, *args), model(x, hx), strict=True):
        torch.testing.assert_close(actual, expected, **TOLERANCE)


def test_rnn_without_the_translations_exports_step_by_step():
    torch.manual_seed(0)
    model = Layer(fusedrnn.RNN(3, 5, 2))
    x, h0 = torch.randn(4, 2, 3), torch.randn(2, 2, 5)
    onnx_model = _export(model, (x, h0))
    assert "RNN" not in _op_types(onnx_model) and "Tanh" in _op_types(onnx_model)
    for actual, expected in zip(_run(onnx_model, x, h0), model(x, h0), strict=True):
        torch.testing.assert_close(actual, expected, **TOLERANCE)


def test_batch_size_stays_dynamic():
    torch.manual_seed(0)
    model = Layer(fusedrnn.LSTM(3, 5, batch_first=True))
    x, hx = torch.randn(2, 4, 3), (torch.randn(1, 2, 5), torch.randn(1, 2, 5))
    batch = torch.export.Dim("batch", min=1)
    # (As for torch.nn.LSTM, the sequence length is fixed at export.)
    onnx_model = _export(model, (x, hx), dynamic_shapes=({0: batch}, ({1: batch}, {1: batch})))
    assert "LSTM" in _op_types(onnx_model)
    x, hx = torch.randn(5, 4, 3), (torch.randn(1, 5, 5), torch.randn(1, 5, 5))
    for actual, expected in zip(_run(onnx_model, x, *hx), model(x, hx), strict=True):
        torch.testing.assert_close(actual, expected, **TOLERANCE)


@pytest.mark.parametrize("cell", [fusedrnn.LSTMCell, fusedrnn.GRUCell, fusedrnn.RNNCell])
def test_cells_export(cell):
    torch.manual_seed(0)
    model = cell(3, 5)
    x = torch.randn(2, 3)
    hx = (torch.randn(2, 5), torch.randn(2, 5)) if cell is fusedrnn.LSTMCell else torch.randn(2, 5)
    args = (x, *hx) if isinstance(hx, tuple) else (x, hx)
    expected = model(x, hx)
    expected = expected if isinstance(expected, tuple) else (expected,)
    onnx_model = _export(model, (x, hx))
    for actual, wanted in zip(_run(onnx_model, *args), expected, strict=True):
        torch.testing.assert_close(actual, wanted, **TOLERANCE)


@pytest.mark.parametrize("layer", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN])
def test_packed_input_exports_with_sequence_lens(layer):
    # The TorchScript exporter maps a PackedSequence onto sequence_lens.
    torch.manual_seed(0)
    model = PackedLayer(layer(3, 5))
    onnx_model = _export(model, (torch.randn(6, 3, 3), torch.tensor([6, 2, 4])), dynamo=False,
                         input_names=["x", "lengths"],
                         dynamic_axes={"x": {0: "steps", 1: "batch"}, "lengths": {0: "batch"}})
    assert layer.__name__ in _op_types(onnx_model)
    # Other lengths, steps and batch size than at export.
    x, lengths = torch.randn(7, 4, 3), torch.tensor([3, 7, 1, 5])
    for actual, expected in zip(_run(onnx_model, x, lengths), model(x, lengths), strict=True):
        torch.testing.assert_close(actual, expected, **TOLERANCE)


def test_packed_input_with_the_default_exporter_says_why_it_fails():
    model = PackedLayer(fusedrnn.LSTM(3, 5))
    with pytest.raises(Exception, match="PackedSequence input cannot be exported"):
        _export(model, (torch.randn(6, 3, 3), torch.tensor([6, 2, 4])))


@pytest.mark.parametrize("dynamo", [True, False])
def test_projection_says_why_it_fails(dynamo):
    model = Layer(fusedrnn.LSTM(3, 5, proj_size=2))
    with pytest.raises(Exception, match="ONNX's LSTM operator has no projection"):
        _export(model, (torch.randn(4, 2, 3), None), dynamo=dynamo)


def test_only_export_leaves_the_kernels():
    model = Layer(fusedrnn.GRU(3, 5))
    x = torch.randn(4, 2, 3)
    _export(model, (x, None))
    with OpRecorder() as recorder:
        model(x, None)
    assert "fusedrnn.gru_layer_forward" in recorder.names
