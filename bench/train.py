"""End to end: train a small sequence classifier with torch.nn and fusedrnn.

The model is the usual sentiment-classification shape, many-to-one:
Embedding -> recurrent cell -> Linear on the last hidden state. Both twins
start from the same weights and see the same synthetic batches, so their
loss curves should agree to rounding; the run reports their training speed
and the largest gap between the curves.
"""
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

import fusedrnn

from .cells import CELLS

VOCAB, EMBED, HIDDEN, CLASSES = 1000, 64, 128, 2
BATCH, SEQ_LEN = 32, 64
WARMUP_STEPS = 3


class Classifier(nn.Module):
    def __init__(self, rnn_cls):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBED)
        self.rnn = rnn_cls(EMBED, HIDDEN, batch_first=True)
        self.linear = nn.Linear(HIDDEN, CLASSES)

    def forward(self, tokens):
        _, hidden = self.rnn(self.embedding(tokens))
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h_n, c_n)
        return self.linear(h_n[-1])


def synthetic_batches(steps, device, seed=0):
    """Random token sequences labelled by whether most tokens lie in the
    lower half of the vocabulary: a rule an RNN can learn by counting."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        tokens = torch.randint(VOCAB, (BATCH, SEQ_LEN), generator=generator)
        labels = ((tokens < VOCAB // 2).float().mean(1) > 0.5).long()
        batches.append((tokens.to(device), labels.to(device)))
    return batches


def train(model, batches):
    """Adam steps over `batches`: returns (losses, seconds)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    device = next(model.parameters()).device
    losses = []
    _synchronize(device)
    start = time.perf_counter()
    for tokens, labels in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(tokens), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())  # no .item() here: it would sync the GPU every step
    _synchronize(device)
    return [float(loss) for loss in losses], time.perf_counter() - start


def train_case(cell_name, device, steps):
    """The end-to-end record for one cell on one device."""
    torch.manual_seed(0)
    baseline = Classifier(CELLS[cell_name].torch_cls).to(device)
    fused = fusedrnn.convert(copy.deepcopy(baseline))
    batches = synthetic_batches(steps, device)

    record = {"id": f"{cell_name}/train/{device}", "cell": cell_name, "device": device,
              "steps": steps, "batch": BATCH, "seq_len": SEQ_LEN,
              "model": f"Embedding({VOCAB}, {EMBED}) -> {type(baseline.rnn).__name__}"
                       f"({EMBED}, {HIDDEN}) -> Linear({HIDDEN}, {CLASSES})"}
    curves = {}
    for name, model in (("torch", baseline), ("fusedrnn", fused)):
        # Warm up on a copy so that the measured model starts untouched.
        train(copy.deepcopy(model), batches[:WARMUP_STEPS])
        curves[name], seconds = train(model, batches)
        record[name] = {"steps_per_s": steps / seconds, "final_loss": curves[name][-1]}
    record["max_loss_diff"] = max(abs(a - b) for a, b in zip(curves["torch"], curves["fusedrnn"]))
    return record


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
