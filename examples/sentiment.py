"""Many-to-one: an Embedding -> LSTM -> Dense sentiment classifier.

The "reviews" are made up here: neutral words, praise ("good", "great", ...)
and criticism ("bad", "dull", ...), where "not" or "never" just before a
word flips it. A review is positive when its praise outweighs its
criticism. Counting words is not enough ("not bad" is praise): the LSTM has
to read the words in order.

Many-to-one: the LSTM reads the whole review, and only its last hidden
state a<T_x> goes to the Dense layer that gives the class. Reviews have
different lengths; they are padded on the left, so that the last step of
every row is the review's last word (padding on the right would make the
LSTM read padding after the review).

    python examples/sentiment.py             # fusedrnn
    python examples/sentiment.py --impl nn   # the same on torch.nn
"""
import random

import torch
import torch.nn.functional as F
from torch import nn

import common

PAD = "<pad>"
PRAISE = ["good", "great", "fun", "brilliant", "moving", "clever"]
CRITICISM = ["bad", "boring", "awful", "dull", "weak", "silly"]
NEGATIONS = ["not", "never"]
NEUTRAL = ["the", "a", "movie", "film", "plot", "actors", "was", "is", "and", "but",
           "were", "story", "ending", "music", "really", "quite", "it"]
VOCABULARY = [PAD] + PRAISE + CRITICISM + NEGATIONS + NEUTRAL
INDEX = {word: i for i, word in enumerate(VOCABULARY)}


def polarity(words):
    """+1 for each praise word, -1 for each criticism, flipped after a negation."""
    score = 0
    for previous, word in zip([None] + words, words):
        value = (word in PRAISE) - (word in CRITICISM)
        score += -value if previous in NEGATIONS else value
    return score


def random_review(rng, max_words):
    """A review of 4..max_words words whose polarity is not zero."""
    while True:
        words = []
        length = rng.randint(4, max_words)
        while len(words) < length:
            roll = rng.random()
            if roll < 0.25:
                words.append(rng.choice(PRAISE + CRITICISM))
            elif roll < 0.35 and len(words) + 2 <= length:
                words += [rng.choice(NEGATIONS), rng.choice(PRAISE + CRITICISM)]
            else:
                words.append(rng.choice(NEUTRAL))
        if polarity(words) != 0:
            return words


def encode(reviews, length):
    """Word indices (batch, length), each review padded on the left."""
    rows = [[INDEX[PAD]] * (length - len(words)) + [INDEX[w] for w in words] for words in reviews]
    return torch.tensor(rows)


def sentiment_batch(rng, batch, max_words):
    reviews = [random_review(rng, max_words) for _ in range(batch)]
    labels = torch.tensor([int(polarity(words) > 0) for words in reviews])
    return encode(reviews, max_words), labels


class SentimentClassifier(nn.Module):
    def __init__(self, layers, vocabulary, embedding, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, embedding)
        self.lstm = layers.LSTM(embedding, hidden, batch_first=True)
        self.dense = nn.Linear(hidden, 2)  # negative, positive

    def forward(self, tokens):
        _, (h_n, _) = self.lstm(self.embed(tokens))
        return self.dense(h_n[-1])  # the state after the last word: many-to-one


def loss_fn(model, tokens, labels):
    return F.cross_entropy(model(tokens), labels)


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], steps=300, batch=64, hidden=64)
    p.add_argument("--embedding", type=int, default=32, help="embedding size")
    p.add_argument("--max-words", type=int, default=20, help="longest review")
    args = p.parse_args(argv)
    layers = common.setup(args)
    rng = random.Random(args.seed)

    model = SentimentClassifier(layers, len(VOCABULARY), args.embedding, args.hidden)
    losses = common.train(model, lambda: sentiment_batch(rng, args.batch, args.max_words),
                          loss_fn, args)

    tokens, labels = sentiment_batch(random.Random(args.seed + 1), 1000, args.max_words)
    with torch.no_grad():
        accuracy = (model(tokens).argmax(-1) == labels).float().mean().item()
    print(f"accuracy on 1000 new reviews: {accuracy:.1%}")
    examples = ["the movie was not bad", "the plot was good but the ending was awful and dull",
                "never boring", "the actors were not weak and the music was great"]
    reviews = [sentence.split() for sentence in examples]
    with torch.no_grad():
        positive = torch.softmax(model(encode(reviews, max(map(len, reviews)))), -1)[:, 1]
    for words, p_positive in zip(reviews, positive.tolist()):
        truth = "positive" if polarity(words) > 0 else "negative"
        print(f"  P(positive) = {p_positive:.2f}  ({truth})  \"{' '.join(words)}\"")
    return {"losses": losses, "accuracy": accuracy}


if __name__ == "__main__":
    main()
