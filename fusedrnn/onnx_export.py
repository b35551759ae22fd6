"""ONNX export: fusedrnn layers and cells export as their torch.nn twins do.

ONNX has standard LSTM, GRU and RNN operators, and torch's exporters already
map torch.nn's recurrent ops onto them; fusedrnn's own ops mean nothing to
ONNX. So while torch.onnx.export traces a model, every fusedrnn layer and
cell runs torch.nn's forward on its own Parameters (fusedrnn's classes are
nn.RNNBase / nn.*Cell subclasses with the same attributes), and the exporter
meets the aten ops it knows:

- torch.onnx.export(dynamo=True), torch's default: torch.export, then the
  translations of onnxscript's torchlib. aten::lstm and aten::gru become
  ONNX LSTM and GRU nodes. torchlib has no translation for aten::rnn_tanh /
  rnn_relu, so the RNN is decomposed into per-step MatMul, Add and Tanh/Relu
  (correct, not one node); `fusedrnn.onnx_translations()` passed as
  custom_translation_table maps it onto ONNX's RNN node instead. As for
  torch.nn, the sequence length is fixed at export (the batch size may be
  dynamic).
- torch.onnx.export(dynamo=False), the TorchScript exporter (deprecated by
  torch): LSTM, GRU and RNN nodes, dynamic sequence length, and
  PackedSequence input mapped onto ONNX's sequence_lens.

Plain torch.export and torch.compile are unaffected: they keep the fused ops.
"""
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


def exporting_to_onnx():
    """Whether torch.onnx.export is tracing the model right now."""
    # torch.onnx.is_in_onnx_export() costs about 2.5 us a call, a few per
    # cent of a one-step cell; the two cheap checks first rule out ordinary
    # calls (the TorchScript exporter traces with torch.jit, the default
    # exporter runs torch.export). Plain torch.export passes the first test
    # and fails the second, so it keeps the fused ops.
    return ((torch.jit.is_tracing() or torch.compiler.is_exporting())
            and _in_onnx_export())


# Strict torch.export (dynamo), the exporter's second try, reads
# torch.onnx.is_in_onnx_export() as False; asking through a function marked
# constant makes dynamo call it at trace time and use its true answer.
@torch.compiler.assume_constant_result
def _in_onnx_export():
    return torch.onnx.is_in_onnx_export()


def nn_forward(module, input, hx=None):
    """`module`'s forward as its torch.nn twin computes it, on `module`'s own
    Parameters: what the ONNX exporters know how to translate. Raises a
    clear error for what ONNX cannot express."""
    _check_exportable(module, input)
    return _nn_class(module).forward(module, input, hx)


def _nn_class(module):
    # Imported here: convert.py imports the modules that call this file.
    from .convert import _NN_TWIN

    for fused_class, nn_class in _NN_TWIN.items():
        if isinstance(module, fused_class):
            return nn_class
    raise TypeError(f"fusedrnn: no torch.nn twin for {type(module).__name__}")


def _check_exportable(module, input):
    if getattr(module, "residual", False):
        # torch.nn's forward, which the exporters translate, has no residual
        # connections: exporting it would drop them silently.
        raise RuntimeError(
            "fusedrnn: layers with residual=True cannot be exported to ONNX yet: the "
            "export runs torch.nn's forward, which has no residual connections")
    if getattr(module, "zoneout", 0) > 0 or getattr(module, "cell_zoneout", 0) > 0:
        # Zoneout acts in eval too (its expectation), which torch.nn's
        # layers cannot express. (Recurrent dropout and weight drop act in
        # training only: an eval export is torch.nn's layer.)
        raise RuntimeError(
            "fusedrnn: layers with zoneout cannot be exported to ONNX: zoneout acts in "
            "eval too, and the export runs torch.nn's forward, which has none")
    if getattr(module, "proj_size", 0) > 0:
        # torch's default exporter would drop the projection silently and
        # write a model that fails in onnxruntime; the TorchScript one
        # refuses it. Say so up front, for both.
        raise RuntimeError(
            "fusedrnn: LSTM(proj_size=...) cannot be exported to ONNX: ONNX's LSTM "
            "operator has no projection")
    if isinstance(input, PackedSequence) and torch.compiler.is_exporting():
        raise RuntimeError(
            "fusedrnn: PackedSequence input cannot be exported with torch.onnx.export's "
            "default (dynamo=True) exporter: in torch " + torch.__version__.split("+")[0]
            + " it has no ONNX translation for packed sequences (nor for torch.nn's). "
            "Use torch.onnx.export(..., dynamo=False), which maps a PackedSequence onto "
            "ONNX's sequence_lens, or export the model on padded input")


def onnx_translations():
    """Translations for torch.onnx.export's custom_translation_table that
    export the Elman RNN (fusedrnn.RNN and torch.nn.RNN alike) as ONNX RNN
    nodes, which torch's default exporter does not do by itself:

        torch.onnx.export(model, args, custom_translation_table=fusedrnn.onnx_translations())

    Needs onnxscript (`pip install fusedrnn[onnx]`)."""
    return {torch.ops.aten.rnn_tanh.input: _rnn_translation("Tanh"),
            torch.ops.aten.rnn_relu.input: _rnn_translation("Relu")}


def _rnn_translation(activation):
    """aten::rnn_{tanh,relu}.input as one ONNX RNN node per layer.

    torch.nn's layout: params holds (w_ih, w_hh[, b_ih, b_hh]) per layer and
    direction, in layer-major order; hx is (layers * directions, B, H).
    ONNX's RNN takes one layer, both directions at once: W (D, H, I),
    R (D, H, H), B (D, 2H) = [b_ih, b_hh], initial_h (D, B, H), and returns
    Y (T, D, B, H) and Y_h (D, B, H). The Elman cell has one gate, so no
    gate reordering is needed (unlike LSTM and GRU).
    """
    from onnxscript import opset18 as op

    def stacked(tensors):
        # (D, ...) from D tensors of one layer, one per direction.
        return op.Concat(*[op.Unsqueeze(t, [0]) for t in tensors], axis=0)

    def translation(input, hx, params, has_biases, num_layers, dropout, train,
                    bidirectional, batch_first):
        if train and dropout > 0 and num_layers > 1:
            raise RuntimeError("fusedrnn: an RNN with dropout exports in eval mode only "
                               "(call model.eval() before torch.onnx.export)")
        directions = 2 if bidirectional else 1
        per_direction = 4 if has_biases else 2
        hidden_size = params[1].shape[1]  # w_hh is (H, H)
        x = op.Transpose(input, perm=[1, 0, 2]) if batch_first else input
        finals = []
        for layer in range(num_layers):
            first = layer * directions * per_direction
            groups = [params[first + d * per_direction:first + (d + 1) * per_direction]
                      for d in range(directions)]
            weights = [stacked([g[0] for g in groups]), stacked([g[1] for g in groups])]
            if has_biases:
                weights.append(stacked([op.Concat(g[2], g[3], axis=0) for g in groups]))
            else:
                weights.append(None)  # ONNX: absent bias is zero
            h0 = op.Slice(hx, [layer * directions], [(layer + 1) * directions], [0])
            y, h_n = op.RNN(x, *weights, None, h0, activations=[activation] * directions,
                            direction="bidirectional" if bidirectional else "forward",
                            hidden_size=hidden_size)
            # (T, D, B, H) -> (T, B, D * H): torch's directions side by side.
            x = op.Reshape(op.Transpose(y, perm=[0, 2, 1, 3]), [0, 0, -1])
            finals.append(h_n)
        output = op.Transpose(x, perm=[1, 0, 2]) if batch_first else x
        return output, op.Concat(*finals, axis=0) if len(finals) > 1 else finals[0]

    return translation
