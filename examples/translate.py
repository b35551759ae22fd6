"""Many-to-many, T_x != T_y: date translation with an attention decoder.

The task is made up here: human-written dates ("3 may 1998",
"tue 3 may 1998", "may 3, 1998", "03.05.1998", "3/5/1998") translated
into the machine format "1998-05-03". Inputs have 8 to 15 characters,
outputs always 10.

- Encoder: Embedding -> bidirectional fusedrnn.LSTM over the characters,
  as a PackedSequence (dates differ in length). a<t'> = [forward a<t'>;
  backward a<t'>] sums up the input around character t'.
- Attention (additive): at output step t the decoder scores every a<t'>,
  e<t,t'> = v . tanh(W_s s<t-1> + W_a a<t'>), turns the scores into weights
  alpha<t,t'> (softmax over the real characters only) and reads the
  context c<t> = sum_t' alpha<t,t'> a<t'>.
- Decoder: fusedrnn.LSTMCell, one output character per step; its input is
  the previous output character and c<t>, and y<t> comes from [s<t>; c<t>].
  Training feeds the true previous character (teacher forcing); translation
  feeds its own previous guess (greedy decoding).

    python examples/translate.py             # fusedrnn
    python examples/translate.py --impl nn   # the same on torch.nn
"""
import datetime
import random

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import common

SOURCE_SYMBOLS = ["<pad>"] + list(" ,./0123456789abcdefghijklmnopqrstuvwxyz")
SOURCE_INDEX = {s: i for i, s in enumerate(SOURCE_SYMBOLS)}
TARGET_SYMBOLS = ["<start>"] + list("-0123456789")  # what the decoder reads and writes
TARGET_INDEX = {s: i for i, s in enumerate(TARGET_SYMBOLS)}
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
FORMATS = [
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{WEEKDAYS[d.weekday()]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: f"{d.day}/{d.month}/{d.year}",
]


def random_pair(rng):
    date = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(36525))
    return rng.choice(FORMATS)(date), date.isoformat()


def encode_sources(texts):
    """(padded indices (B, T_x), lengths (B,))."""
    lengths = torch.tensor([len(t) for t in texts])
    indices = torch.zeros(len(texts), int(lengths.max()), dtype=torch.long)
    for row, text in enumerate(texts):
        indices[row, :len(text)] = torch.tensor([SOURCE_INDEX[c] for c in text])
    return indices, lengths


def date_batch(rng, batch):
    sources, targets = zip(*(random_pair(rng) for _ in range(batch)))
    indices, lengths = encode_sources(sources)
    target = torch.tensor([[TARGET_INDEX[c] for c in t] for t in targets])
    return indices, lengths, target


class Translator(nn.Module):
    def __init__(self, layers, embedding, hidden):
        super().__init__()
        self.source_embed = nn.Embedding(len(SOURCE_SYMBOLS), embedding)
        self.encoder = layers.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.target_embed = nn.Embedding(len(TARGET_SYMBOLS), embedding)
        self.decoder = layers.LSTMCell(embedding + 2 * hidden, hidden)
        # Additive attention: e<t,t'> = v . tanh(W_s s<t-1> + W_a a<t'>).
        self.W_s = nn.Linear(hidden, hidden, bias=False)
        self.W_a = nn.Linear(2 * hidden, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.out = nn.Linear(hidden + 2 * hidden, len(TARGET_SYMBOLS))

    def encode(self, indices, lengths):
        """a<t'> for every input character: (B, T_x, 2H), and its padding mask."""
        packed = pack_padded_sequence(self.source_embed(indices), lengths, batch_first=True,
                                      enforce_sorted=False)
        a, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True)
        real = torch.arange(a.shape[1]) < lengths[:, None]  # (B, T_x): not padding
        return a, real

    def step(self, previous, state, a, a_keys, real):
        """One decoder step: (logits of y<t>, new state, attention weights)."""
        s = state[0]
        scores = self.v(torch.tanh(self.W_s(s)[:, None] + a_keys))[..., 0]  # (B, T_x)
        alpha = torch.softmax(scores.masked_fill(~real, float("-inf")), dim=1)
        context = (alpha[..., None] * a).sum(1)  # (B, 2H)
        state = self.decoder(torch.cat([self.target_embed(previous), context], 1), state)
        return self.out(torch.cat([state[0], context], 1)), state, alpha

    def forward(self, indices, lengths, target=None, steps=10):
        """Logits (B, T_y, classes). With `target`, teacher forcing; without
        it, greedy decoding. Also returns the attention weights (B, T_y, T_x)."""
        a, real = self.encode(indices, lengths)
        a_keys = self.W_a(a)  # the part of the scores that does not change with t
        batch = indices.shape[0]
        hidden = self.decoder.hidden_size
        state = (a.new_zeros(batch, hidden), a.new_zeros(batch, hidden))
        previous = torch.full((batch,), TARGET_INDEX["<start>"])
        logits, attention = [], []
        for t in range(target.shape[1] if target is not None else steps):
            step_logits, state, alpha = self.step(previous, state, a, a_keys, real)
            logits.append(step_logits)
            attention.append(alpha)
            previous = target[:, t] if target is not None else step_logits.argmax(1)
        return torch.stack(logits, 1), torch.stack(attention, 1)


def loss_fn(model, indices, lengths, target):
    logits, _ = model(indices, lengths, target)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def translate(model, texts):
    indices, lengths = encode_sources(texts)
    with torch.no_grad():
        logits, attention = model(indices, lengths)
    outputs = ["".join(TARGET_SYMBOLS[i] for i in row) for row in logits.argmax(-1).tolist()]
    return outputs, attention


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], steps=300, batch=64, hidden=64)
    p.add_argument("--embedding", type=int, default=16, help="embedding size")
    args = p.parse_args(argv)
    layers = common.setup(args)
    rng = random.Random(args.seed)

    model = Translator(layers, args.embedding, args.hidden)
    losses = common.train(model, lambda: date_batch(rng, args.batch), loss_fn, args)

    test = [random_pair(random.Random(args.seed + 1 + i)) for i in range(1000)]
    outputs, attention = translate(model, [source for source, _ in test])
    exact = sum(out == truth for out, (_, truth) in zip(outputs, test)) / len(test)
    characters = sum(o == t for out, (_, truth) in zip(outputs, test)
                     for o, t in zip(out, truth)) / (10 * len(test))
    print(f"greedy decoding of 1000 new dates: {exact:.1%} exactly right, "
          f"{characters:.1%} of characters right")
    for (source, _), output in list(zip(test, outputs))[:4]:
        print(f"  {source!r:>22} -> {output}")
    # Where the decoder looked: for each output character, the input
    # character with the largest attention weight.
    source = test[0][0]
    looked = [source[i] for i in attention[0, :, :len(source)].argmax(1).tolist()]
    print(f"  attention for {source!r}: " + " ".join(
        f"{o}<-{s!r}" for o, s in zip(outputs[0], looked)))
    return {"losses": losses, "accuracy": exact, "character_accuracy": characters}


if __name__ == "__main__":
    main()
