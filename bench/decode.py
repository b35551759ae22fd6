"""The decoding loop of the latency group: greedy generation with
Embedding -> LSTMCell -> Linear -> argmax, one token at a time, batch 1.

This is where per-call overhead shows: every token is a few small ops
called from Python, and the next token needs the previous one's argmax.
"""
import copy

import torch
from torch import nn

import fusedrnn


class Decoder(nn.Module):
    def __init__(self, vocab, embed, hidden):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.cell = nn.LSTMCell(embed, hidden)
        self.linear = nn.Linear(hidden, vocab)

    @torch.no_grad()
    def generate(self, tokens, batch=1):
        """`tokens` greedy tokens per sequence, from token 0 and zero states:
        a (tokens, batch) tensor."""
        token = torch.zeros(batch, dtype=torch.long)
        state = None
        generated = []
        for _ in range(tokens):
            state = self.cell(self.embedding(token), state)
            token = self.linear(state[0]).argmax(-1)
            generated.append(token)
        return torch.stack(generated)


def decoder_twins(case):
    """(torch.nn decoder, fusedrnn decoder) with the same weights; the
    fused one has fusedrnn.LSTMCell in place of nn.LSTMCell."""
    torch.manual_seed(0)
    baseline = Decoder(case.vocab, case.I, case.H)
    return baseline, fusedrnn.convert(copy.deepcopy(baseline))
