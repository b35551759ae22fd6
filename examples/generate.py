"""One-to-many: a note-level melody generator (train the layer, sample with the cell).

The "music" is made up here: a tune is four motifs from a small songbook,
written as notes (C D E F G A B c) with "|" between motifs, and it returns
home: its last motif repeats its first, e.g. "CEG|GFED|FAc|CEG". The model
must learn the motifs and remember how the tune began. (The loss levels off
above zero: which motif comes next is a random choice.)

Training reads whole tunes with fusedrnn.LSTM (teacher forcing: the input
at step t is the true note t-1, the target note t). Generation is
one-to-many: from a single start symbol, fusedrnn.LSTMCell, holding the
layer's weights, runs one step at a time and each sampled note becomes the
next step's input, until the end symbol.

    python examples/generate.py             # fusedrnn
    python examples/generate.py --impl nn   # the same on torch.nn
"""
import random

import torch
import torch.nn.functional as F
from torch import nn

import common

MOTIFS = ["CEG", "GEC", "CDEF", "GFED", "EGc", "cBAG", "FAc", "DFA"]
START, END, BAR = "^", "$", "|"
SYMBOLS = [START, END, BAR] + list("CDEFGABc")
INDEX = {symbol: i for i, symbol in enumerate(SYMBOLS)}
IGNORE = -100  # target of the padding after a tune's end


def random_tune(rng):
    first, *middle = (rng.choice(MOTIFS) for _ in range(3))
    return BAR.join([first, *middle, first])


def tune_batch(rng, batch):
    """Inputs "^" + tune and targets tune + "$", padded to the longest."""
    tunes = [random_tune(rng) for _ in range(batch)]
    length = max(map(len, tunes)) + 1
    inputs = torch.full((batch, length), INDEX[END])
    targets = torch.full((batch, length), IGNORE)
    for row, tune in enumerate(tunes):
        symbols = [INDEX[s] for s in START + tune + END]
        inputs[row, :len(symbols) - 1] = torch.tensor(symbols[:-1])
        targets[row, :len(symbols) - 1] = torch.tensor(symbols[1:])
    return inputs, targets


class MelodyModel(nn.Module):
    def __init__(self, layers, embedding, hidden):
        super().__init__()
        self.embed = nn.Embedding(len(SYMBOLS), embedding)
        self.lstm = layers.LSTM(embedding, hidden, batch_first=True)
        self.dense = nn.Linear(hidden, len(SYMBOLS))  # the next note's logits

    def forward(self, inputs):
        output, _ = self.lstm(self.embed(inputs))
        return self.dense(output)


def loss_fn(model, inputs, targets):
    return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def sample(model, layers, count, generator, temperature=0.7, max_notes=40):
    """`count` tunes, one note at a time with an LSTMCell that holds the
    trained layer's weights: the layer's weight_ih_l0 is the cell's weight_ih
    (a one-layer LSTM is its cell applied at every step)."""
    lstm = model.lstm
    cell = layers.LSTMCell(lstm.input_size, lstm.hidden_size)
    cell.load_state_dict({name.removesuffix("_l0"): value
                          for name, value in lstm.state_dict().items()})
    token = torch.full((count,), INDEX[START])
    state = None  # zeros
    notes = []
    with torch.no_grad():
        for _ in range(max_notes):
            state = cell(model.embed(token), state)
            logits = model.dense(state[0]) / temperature
            token = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
            notes.append(token)
    tunes = []
    for row in torch.stack(notes, 1).tolist():
        text = "".join(SYMBOLS[i] for i in row)
        tunes.append(text.split(END)[0] if END in text else None)  # None: never ended
    return tunes


def judge(tune):
    """(well formed: four known motifs, returns home: last motif = first)."""
    motifs = (tune or "").split(BAR)
    well_formed = len(motifs) == 4 and all(m in MOTIFS for m in motifs)
    return well_formed, well_formed and motifs[0] == motifs[-1]


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], steps=300, batch=64, hidden=64)
    p.add_argument("--embedding", type=int, default=16, help="embedding size")
    p.add_argument("--samples", type=int, default=200, help="tunes to generate and judge")
    args = p.parse_args(argv)
    layers = common.setup(args)
    rng = random.Random(args.seed)

    model = MelodyModel(layers, args.embedding, args.hidden)
    losses = common.train(model, lambda: tune_batch(rng, args.batch), loss_fn, args)

    tunes = sample(model, layers, args.samples, torch.Generator().manual_seed(args.seed))
    verdicts = [judge(tune) for tune in tunes]
    well_formed = sum(w for w, _ in verdicts) / len(tunes)
    home = sum(h for _, h in verdicts) / len(tunes)
    print("samples:", "  ".join(str(tune) for tune in tunes[:5]))
    print(f"of {len(tunes)} sampled tunes: {well_formed:.0%} are four known motifs, "
          f"{home:.0%} also end on their first motif")
    return {"losses": losses, "well_formed": well_formed, "returns_home": home}


if __name__ == "__main__":
    main()
