"""The Elman RNN, written as the lecture writes it, learning to echo its input.

    a<t> = g1(W_aa a<t-1> + W_ax x<t> + b_a)      g1 = tanh
    y<t> = g2(W_ya a<t> + b_y)                     g2 = softmax

fusedrnn.RNN computes the first line for all t at once (its W_ax is
`weight_ih_l0`, W_aa is `weight_hh_l0`, and b_a is split into two biases,
`bias_ih_l0 + bias_hh_l0`, as torch.nn.RNN keeps it); a Linear layer
computes the second, with the softmax folded into the cross-entropy loss.

Task (many-to-many, T_x = T_y): x is a random string of symbols, one-hot
encoded; y<t> must be x<t - delay>, so the network has to carry each symbol
in its state for `delay` steps.

    python examples/elman_rnn.py             # fusedrnn
    python examples/elman_rnn.py --impl nn   # the same on torch.nn
"""
import torch
import torch.nn.functional as F
from torch import nn

import common


class ElmanRNN(nn.Module):
    def __init__(self, layers, n_x, n_a, n_y):
        super().__init__()
        self.rnn = layers.RNN(n_x, n_a, nonlinearity="tanh", batch_first=True)  # a<t>
        self.output = nn.Linear(n_a, n_y)  # W_ya a<t> + b_y

    def forward(self, x):
        """x: (batch, T, n_x) -> the logits of y<t>, (batch, T, n_y)."""
        a, _ = self.rnn(x)
        return self.output(a)


def lecture_forward(model, x):
    """y<t> computed step by step with the lecture's formulas and names, from
    the model's own weights: the check that the layer is that RNN."""
    W_ax, W_aa = model.rnn.weight_ih_l0, model.rnn.weight_hh_l0
    b_a = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0
    W_ya, b_y = model.output.weight, model.output.bias
    a = torch.zeros(x.shape[0], W_aa.shape[0])  # a<0> = 0
    y = []
    for t in range(x.shape[1]):
        a = torch.tanh(a @ W_aa.T + x[:, t] @ W_ax.T + b_a)
        y.append(torch.softmax(a @ W_ya.T + b_y, dim=-1))
    return torch.stack(y, dim=1)


def echo_batch(batch, steps, symbols, delay):
    """One-hot inputs (batch, steps, symbols) and targets y<t> = x<t - delay>;
    the first `delay` steps have nothing to echo and are ignored (-100)."""
    tokens = torch.randint(0, symbols, (batch, steps))
    targets = torch.full_like(tokens, -100)
    targets[:, delay:] = tokens[:, :-delay]
    return F.one_hot(tokens, symbols).float(), targets


def loss_fn(model, x, targets):
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], steps=300, batch=64, hidden=32)
    p.add_argument("--length", type=int, default=30, help="time steps per sequence")
    p.add_argument("--symbols", type=int, default=4, help="size of the alphabet")
    p.add_argument("--delay", type=int, default=3, help="how many steps back to echo")
    args = p.parse_args(argv)
    layers = common.setup(args)

    model = ElmanRNN(layers, args.symbols, args.hidden, args.symbols)
    print(f"task: echo the symbol from {args.delay} steps back "
          f"(chance: loss {torch.log(torch.tensor(float(args.symbols))):.3f})")
    losses = common.train(
        model, lambda: echo_batch(args.batch, args.length, args.symbols, args.delay),
        loss_fn, args)

    x, targets = echo_batch(256, args.length, args.symbols, args.delay)
    with torch.no_grad():
        probabilities = torch.softmax(model(x), dim=-1)
        by_formula = lecture_forward(model, x)
    scored = targets != -100
    accuracy = (probabilities.argmax(-1) == targets)[scored].float().mean().item()
    gap = (probabilities - by_formula).abs().max().item()
    print(f"accuracy on new sequences: {accuracy:.1%}")
    print(f"layer vs. the lecture's formulas, step by step: max difference {gap:.1e}")
    return {"losses": losses, "accuracy": accuracy, "formula_gap": gap}


if __name__ == "__main__":
    main()
