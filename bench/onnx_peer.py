"""ONNX Runtime as a peer of the latency group: a torch.nn recurrent
layer or cell rebuilt as ONNX's standard LSTM / GRU / RNN nodes, one per
layer, on the same weights.

The graph is written by hand with onnx's helper API rather than exported
by torch.onnx, so that what runs is exactly one recurrent node per layer
(ONNX Runtime's own recurrent kernel) and nothing that an exporter might
add around it. Optional: it needs `onnx` and `onnxruntime`
(pip install 'fusedrnn[onnx]'); `available()` says whether they import.

Two things differ between torch and ONNX:
  gate order  torch stacks LSTM gates as i, f, g, o and ONNX as i, o, f, c;
              torch's GRU as r, z, n and ONNX's as z, r, h
  GRU reset   torch applies the reset gate after the recurrent multiply,
              r * (W_hn h + b_hn), which ONNX calls linear_before_reset=1
"""
import importlib.util

import numpy as np
from torch import nn

OPSET = 17
IR_VERSION = 8  # the oldest IR that opset 17 allows: any recent onnxruntime loads it
OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
# For each ONNX gate block in order, the index of torch's block.
TORCH_BLOCK_OF_ONNX_GATE = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn": [0]}


def available():
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


class OnnxRecurrent:
    """`module` (nn.LSTM/GRU/RNN, or nn.LSTMCell/GRUCell/RNNCell) as an
    onnxruntime session on `threads` threads.

    A layer takes x of shape (T, B, I), starts from zero states (like
    torch's default) and returns the last layer's output (T, B, D*H). A
    cell takes x (B, I) and its states, each (B, H), and returns the new
    states, like the torch cell.
    """

    def __init__(self, module, cell, threads):
        import onnxruntime

        self.is_cell = isinstance(module, nn.RNNCellBase)
        if cell == "rnn" and module.nonlinearity != "tanh":
            raise ValueError("ONNX's RNN node is built here with its default tanh only")
        self.model = build_model(module, cell)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one node at a time: nothing to run side by side
        self.session = onnxruntime.InferenceSession(self.model.SerializeToString(), options,
                                                    providers=["CPUExecutionProvider"])

    def feeds(self, x, *states):
        """The session's inputs for torch tensors: made once, outside the
        timed region, like the torch inputs of the other implementations."""
        if self.is_cell:
            names = ["X", "h0", "c0"][:1 + len(states)]
            # A cell is a one-step sequence with one direction: (1, B, ...).
            return {name: t.detach().unsqueeze(0).numpy() for name, t in zip(names, (x, *states))}
        return {"X": x.detach().numpy()}

    def run(self, feeds):
        outputs = self.session.run(None, feeds)
        # A cell's states come back as (directions=1, B, H).
        return [output[0] for output in outputs] if self.is_cell else outputs[0]


def build_model(module, cell):
    """The onnx ModelProto of `module` (see OnnxRecurrent)."""
    from onnx import TensorProto, checker, helper

    is_cell = isinstance(module, nn.RNNCellBase)
    layers = 1 if is_cell else module.num_layers
    directions = 2 if getattr(module, "bidirectional", False) else 1
    H = module.hidden_size
    state_names = ["h0", "c0"][:2 if cell == "lstm" else 1]

    def tensor(name, dims):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    initializers, nodes = [], []
    x = "X"
    for layer in range(layers):
        W, R, B = _onnx_weights(module, cell, layer, directions, is_cell)
        names = [f"W{layer}", f"R{layer}", f"B{layer}"]
        initializers += [helper.make_tensor(name, TensorProto.FLOAT, array.shape, array.ravel())
                         for name, array in zip(names, (W, R, B))]
        attributes = {"hidden_size": H,
                      "direction": "bidirectional" if directions == 2 else "forward"}
        if cell == "gru":
            attributes["linear_before_reset"] = 1
        # Inputs: X, W, R, B, sequence_lens (none: every sequence is full),
        # then the initial states, which a layer omits (zeros, like torch).
        inputs = [x, *names, ""] + (state_names if is_cell else [])
        # Outputs: Y (every step's state), then the final states.
        outputs = ["", *[f"{name[0]}1" for name in state_names]] if is_cell else [f"Y{layer}"]
        nodes.append(helper.make_node(OPS[cell], inputs, outputs, name=f"{cell}{layer}",
                                      **attributes))
        if not is_cell:
            x = _flatten_directions(helper, nodes, initializers, f"Y{layer}", layer, directions)

    if is_cell:
        graph_inputs = [tensor(name, [1, "B", size])
                        for name, size in zip(["X", *state_names],
                                              [module.input_size, H, H])]
        graph_outputs = [tensor(f"{name[0]}1", [1, "B", H]) for name in state_names]
    else:
        graph_inputs = [tensor("X", ["T", "B", module.input_size])]
        graph_outputs = [tensor(x, ["T", "B", directions * H])]
    graph = helper.make_graph(nodes, f"{cell}_{'cell' if is_cell else 'layer'}",
                              graph_inputs, graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    checker.check_model(model)
    return model


def _onnx_weights(module, cell, layer, directions, is_cell):
    """W (D, G*H, I), R (D, G*H, H) and B (D, 2*G*H) of one layer in ONNX's
    layout: directions stacked (forward first), gate blocks in ONNX's
    order, input and recurrent biases side by side."""
    order = TORCH_BLOCK_OF_ONNX_GATE[cell]
    stacks = {"W": [], "R": [], "B": []}
    for direction in range(directions):
        suffix = "" if is_cell else f"_l{layer}" + ("_reverse" if direction else "")
        w_ih, w_hh, b_ih, b_hh = (getattr(module, f"{name}{suffix}").detach().numpy()
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        stacks["W"].append(_reorder(w_ih, order))
        stacks["R"].append(_reorder(w_hh, order))
        stacks["B"].append(np.concatenate([_reorder(b_ih, order), _reorder(b_hh, order)]))
    return tuple(np.ascontiguousarray(np.stack(stacks[key]), dtype=np.float32)
                 for key in ("W", "R", "B"))


def _reorder(array, order):
    """`array`'s gate blocks (along its first dimension) in `order`."""
    blocks = np.split(array, len(order))
    return np.concatenate([blocks[index] for index in order])


def _flatten_directions(helper, nodes, initializers, y, layer, directions):
    """ONNX's Y is (T, D, B, H); torch's output and the next layer's input
    are (T, B, D*H). Appends the nodes that convert it; returns their output."""
    from onnx import TensorProto

    out = f"output{layer}"
    if directions == 1:
        # (T, 1, B, H) -> (T, B, H): a squeeze, no data moved.
        axes = f"squeeze_axes{layer}"
        initializers.append(helper.make_tensor(axes, TensorProto.INT64, [1], [1]))
        nodes.append(helper.make_node("Squeeze", [y, axes], [out]))
        return out
    shape = f"flat_shape{layer}"
    # Reshape's 0 keeps that dimension, -1 takes what is left: (T, B, D*H).
    initializers.append(helper.make_tensor(shape, TensorProto.INT64, [3], [0, 0, -1]))
    nodes.append(helper.make_node("Transpose", [y], [f"{y}_tbdh"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", [f"{y}_tbdh", shape], [out]))
    return out
