"""What every example shares: its command line, the --impl choice and a
training loop that prints the loss and the time per step.

Each example defines `main(argv=None)`, which parses `argv` (the command
line when None), trains, prints, and returns a dict of results (the tests
call it with tiny sizes).
"""
import argparse
import time

import torch
from torch import nn

import fusedrnn


def parser(description, *, steps, batch, hidden, lr=1e-2):
    """An argument parser with the options every example takes; `steps`,
    `batch`, `hidden` and `lr` are the example's defaults."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--impl", choices=["fusedrnn", "nn"], default="fusedrnn",
                   help="recurrent layers from fusedrnn (default) or torch.nn, to compare")
    p.add_argument("--steps", type=int, default=steps, help="training steps")
    p.add_argument("--batch", type=int, default=batch, help="sequences per step")
    p.add_argument("--hidden", type=int, default=hidden, help="hidden units of the RNN")
    p.add_argument("--lr", type=float, default=lr, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=0)
    # These models are small: a step is many short pieces of work, where
    # threads mostly wait for each other, and on a busy machine they wait
    # much longer (one run here: 8 ms a step on one thread, 240 on two).
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1; 0: torch's default)")
    p.add_argument("--log-every", type=int, default=None,
                   help="print the loss every N steps (default: about ten lines)")
    return p


def setup(args):
    """Seed torch and return the module that holds the recurrent layers:
    fusedrnn or torch.nn. Both have LSTM, GRU, RNN, LSTMCell, GRUCell and
    RNNCell with the same arguments, so the examples are written once."""
    torch.manual_seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"recurrent layers: {args.impl}, {torch.get_num_threads()} threads")
    return fusedrnn if args.impl == "fusedrnn" else nn


def train(model, batches, loss_fn, args):
    """Train `model` with Adam for args.steps steps. `batches()` returns a
    fresh training batch (a tuple), `loss_fn(model, *batch)` its loss.
    Prints the mean loss of every stretch of steps and the time per step;
    returns the list of losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    log_every = args.log_every or max(1, args.steps // 10)
    model.train()
    losses, seconds = [], 0.0
    for step in range(1, args.steps + 1):
        batch = batches()  # drawn outside the timed part: it is not the model's work
        start = time.perf_counter()
        loss = loss_fn(model, *batch)
        optimizer.zero_grad()
        loss.backward()
        # Keeps the occasional large gradient of a recurrent net from undoing training.
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seconds += time.perf_counter() - start
        losses.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            recent = losses[-log_every:]
            print(f"step {step:5d}  loss {sum(recent) / len(recent):.4f}  "
                  f"{1000 * seconds / step:.1f} ms/step")
    model.eval()
    return losses
