"""Many-to-many, T_x = T_y: a part-of-speech tagger on packed sequences.

The language is made up here: sentences such as "the old dog sees a fish
and they watch the duck", one tag per word (DET, ADJ, NOUN, VERB, PRON,
ADV, CONJ). Some words are nouns or verbs depending on where they stand
("fish", "watch", "duck", "run", "saw"): the tagger has to read the context.

Sentences differ in length. Instead of padding them, the batch goes through
the bidirectional LSTM as a PackedSequence (pack_padded_sequence): at each
time step the layer computes only the sentences still running, and the
backward direction of each sentence starts at its own last word. The loss
is taken on the packed rows directly, so padding never enters it.

    python examples/tagger.py             # fusedrnn
    python examples/tagger.py --impl nn   # the same on torch.nn
"""
import random

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import common

WORDS = {
    "DET": ["the", "a", "every", "this"],
    "ADJ": ["big", "small", "red", "old", "quick"],
    "NOUN": ["dog", "cat", "man", "bird", "child"],
    "VERB": ["sees", "likes", "chases", "eats"],
    "PRON": ["she", "he", "they"],
    "ADV": ["quickly", "often", "today"],
    "CONJ": ["and"],
}
AMBIGUOUS = ["fish", "watch", "duck", "run", "saw"]  # NOUN or VERB
TAGS = list(WORDS)
VOCABULARY = ["<pad>"] + sorted({w for words in WORDS.values() for w in words} | set(AMBIGUOUS))
WORD_INDEX = {w: i for i, w in enumerate(VOCABULARY)}


def noun_phrase(rng):
    adjectives = [(rng.choice(WORDS["ADJ"]), "ADJ") for _ in range(rng.choice([0, 0, 1, 2]))]
    return [(rng.choice(WORDS["DET"]), "DET"), *adjectives,
            (rng.choice(WORDS["NOUN"] + AMBIGUOUS), "NOUN")]


def random_sentence(rng):
    """[(word, tag), ...]: one to three clauses joined by "and"."""
    sentence = []
    for clause in range(rng.randint(1, 3)):
        if clause:
            sentence.append(("and", "CONJ"))
        subject = [(rng.choice(WORDS["PRON"]), "PRON")] if rng.random() < 0.3 \
            else noun_phrase(rng)
        sentence += subject + [(rng.choice(WORDS["VERB"] + AMBIGUOUS), "VERB")]
        sentence += noun_phrase(rng)
        if rng.random() < 0.3:
            sentence.append((rng.choice(WORDS["ADV"]), "ADV"))
    return sentence


def tag_batch(rng, batch):
    """(words (B, T), tags (B, T), lengths (B,)), padded with 0."""
    sentences = [random_sentence(rng) for _ in range(batch)]
    lengths = torch.tensor([len(s) for s in sentences])
    words = torch.zeros(batch, int(lengths.max()), dtype=torch.long)
    tags = torch.zeros_like(words)
    for row, sentence in enumerate(sentences):
        words[row, :len(sentence)] = torch.tensor([WORD_INDEX[w] for w, _ in sentence])
        tags[row, :len(sentence)] = torch.tensor([TAGS.index(t) for _, t in sentence])
    return words, tags, lengths


class Tagger(nn.Module):
    def __init__(self, layers, embedding, hidden):
        super().__init__()
        self.embed = nn.Embedding(len(VOCABULARY), embedding)
        self.lstm = layers.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(2 * hidden, len(TAGS))

    def forward(self, words, lengths):
        """Tag logits as a PackedSequence: one row per real word."""
        packed = pack_padded_sequence(self.embed(words), lengths, batch_first=True,
                                      enforce_sorted=False)
        output, _ = self.lstm(packed)
        return output._replace(data=self.dense(output.data))


def packed_targets(tags, lengths):
    """The tags in the packed rows' order."""
    return pack_padded_sequence(tags, lengths, batch_first=True, enforce_sorted=False).data


def loss_fn(model, words, tags, lengths):
    return F.cross_entropy(model(words, lengths).data, packed_targets(tags, lengths))


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], steps=200, batch=64, hidden=64)
    p.add_argument("--embedding", type=int, default=32, help="embedding size")
    args = p.parse_args(argv)
    layers = common.setup(args)
    rng = random.Random(args.seed)

    model = Tagger(layers, args.embedding, args.hidden)
    losses = common.train(model, lambda: tag_batch(rng, args.batch), loss_fn, args)

    words, tags, lengths = tag_batch(random.Random(args.seed + 1), 1000)
    with torch.no_grad():
        predicted = model(words, lengths).data.argmax(1)
    truth, word_rows = packed_targets(tags, lengths), packed_targets(words, lengths)
    ambiguous = torch.isin(word_rows, torch.tensor([WORD_INDEX[w] for w in AMBIGUOUS]))
    accuracy = (predicted == truth).float().mean().item()
    ambiguous_accuracy = (predicted == truth)[ambiguous].float().mean().item()
    print(f"accuracy on 1000 new sentences: {accuracy:.1%} of words, "
          f"{ambiguous_accuracy:.1%} of the noun-or-verb words")

    example = "they saw the duck and the old duck saw a fish quickly".split()
    with torch.no_grad():
        packed = model(torch.tensor([[WORD_INDEX[w] for w in example]]),
                       torch.tensor([len(example)]))
        tagged = pad_packed_sequence(packed, batch_first=True)[0][0].argmax(1)
    print("  " + " ".join(f"{w}/{TAGS[t]}" for w, t in zip(example, tagged.tolist())))
    return {"losses": losses, "accuracy": accuracy, "ambiguous_accuracy": ambiguous_accuracy}


if __name__ == "__main__":
    main()
