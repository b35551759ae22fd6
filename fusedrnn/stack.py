"""Cell-agnostic orchestration of a multi-layer, optionally bidirectional RNN.

The per-layer work is delegated to `layer_fn` (the reference LSTM, a fused
kernel, or a GRU/RNN layer), so this module only handles layer/direction
bookkeeping, inter-layer dropout, residual connections and state stacking.
Where the fused kernels run torch.nn's cells with nothing drawn per layer in
Python, the modules call the cell's stack op instead (csrc/core/stack_op.cpp),
this loop in C++ on the same layer ops; tests/test_stack_op.py holds the two
to the same bits, so a change here goes there too.
"""

import torch
import torch.nn.functional as F


def run_stack(x, hx, layer_weights, layer_fn, *, num_layers, bidirectional, dropout, training,
              batch_sizes=None, residual=False, regularize=None):
    """Run a stack of recurrent layers.

    x: (T, B, I) time-major dense, or packed data (N, I) with batch_sizes.
    hx: tuple of state tensors each shaped (num_layers * D, B, S_k) (LSTM: (h0, c0); GRU/RNN: (h0,)).
    layer_weights: list of weight tuples, index layer * D + direction (the tuple is passed to layer_fn unchanged).
    layer_fn(x, state_tuple, weights, reverse, batch_sizes) -> (y, final_state_tuple).
    residual: every layer but the first adds its input to its output (see
    FusedRNNBase for where that sits relative to dropout).
    regularize(layer_input) -> Regularization or None: draws the masks of one
    (layer, direction), in that order; layer_fn then gets them as its
    `regularization` argument.
    Returns (y, final_hx): y (T, B, D*P) or (N, D*P); final_hx tuple like hx, stacked in layer*D+direction order.
    """
    num_directions = 2 if bidirectional else 1
    finals = []  # one final state tuple per (layer, direction), in layer*D+direction order
    layer_input = x

    for layer in range(num_layers):
        if layer > 0:
            # Dropout acts on every layer's output except the last one, which
            # is the same as acting on the input of every layer but the first.
            layer_input = F.dropout(layer_input, dropout, training)

        outputs = []
        for direction in range(num_directions):
            index = layer * num_directions + direction
            state = tuple(s[index] for s in hx)
            extra = {}
            if regularize is not None:
                reg = regularize(layer_input)
                if reg is not None:
                    extra["regularization"] = reg
            y, final = layer_fn(layer_input, state, layer_weights[index], direction == 1,
                                batch_sizes, **extra)
            outputs.append(y)
            finals.append(final)

        # Feature dim is last for both dense (T, B, P) and packed (N, P) outputs.
        output = torch.cat(outputs, dim=-1)
        if residual and layer > 0:
            # The sum is this layer's output: the next layer's dropout (at the
            # top of the loop) acts on it, as torch.nn's acts on a layer's output.
            output = output + layer_input
        layer_input = output

    # Regroup per state kind: finals is [(h, c), (h, c), ...] -> (stack of h, stack of c).
    final_hx = tuple(torch.stack(kind) for kind in zip(*finals))
    return layer_input, final_hx
