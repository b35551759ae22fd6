"""The cases of the latency group (`python -m bench latency`): small
batches, where the time of one call matters more than throughput.

Three kinds of case:
  step    one step of nn.LSTMCell / GRUCell / RNNCell (x, state -> state)
  layer   a whole nn.LSTM / GRU call on a batch-1 stream: T=1 (stream1, a
          token at a time) and T=100 (stream100, a short sequence at once),
          one layer or two bidirectional layers; and the 2-layer LSTM of
          pytorch/examples' word-language model at its default sizes, a
          small model trained on the CPU
  decode  a greedy decoding loop, Embedding -> LSTMCell -> Linear -> argmax,
          one token at a time, timed end to end

A Scale holds every size of the group, so that the tests can run the same
cases at toy sizes in seconds.
"""
from dataclasses import dataclass
from typing import NamedTuple


class Scale(NamedTuple):
    step_batches: tuple  # B of the one-step cases
    step_hidden: tuple   # H (= I) of the one-step cases
    stream_hidden: int   # I = H of the layer cases
    stream_steps: int    # T of the longer stream ("stream100")
    vocab: int           # decode: vocabulary (Embedding rows, Linear outputs)
    embed: int           # decode: embedding width = LSTMCell input
    decode_hidden: int   # decode: LSTMCell hidden size
    tokens: int          # decode: tokens generated per timed call
    word_lm: tuple       # (T, B, H = I) of the word-language model's LSTM
    float64_cell: tuple  # (B, H = I) of the float64 cells of an odd size


SCALES = {
    "full": Scale(step_batches=(1, 32), step_hidden=(256, 1024), stream_hidden=256,
                  stream_steps=100, vocab=1000, embed=256, decode_hidden=256, tokens=100,
                  word_lm=(35, 20, 200), float64_cell=(97, 51)),
    # For the smoke test: every case, tiny sizes; its timings mean nothing.
    "tiny": Scale(step_batches=(1, 2), step_hidden=(8,), stream_hidden=8,
                  stream_steps=3, vocab=20, embed=8, decode_hidden=8, tokens=3,
                  word_lm=(3, 2, 8), float64_cell=(3, 5)),
}


@dataclass(frozen=True)
class LatencyCase:
    kind: str      # "step", "layer" or "decode"
    cell: str      # "lstm", "gru" or "rnn" (decode: "lstm")
    T: int         # time steps per call (decode: tokens generated)
    B: int
    I: int         # input features (decode: embedding width)
    H: int
    mode: str      # "fwd" (no grad) or "fwd+bwd"
    layers: int = 1
    bidirectional: bool = False
    vocab: int = 0  # decode only
    # What fusedrnn runs in. torch.nn runs float32 but for float64 cases:
    # the bfloat16 cases ask what a model cast to bfloat16 gains over
    # torch.nn's float32 one.
    dtype: str = "float32"

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    @property
    def torch_dtype(self):
        return "float64" if self.dtype == "float64" else "float32"

    @property
    def name(self):
        """What the tables show, e.g. "LSTMCell B=1 H=256", "GRU stream100 2-layer bidir",
        "LSTMCell decode V=1000 H=256, 100 tokens"."""
        cell = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[self.cell]
        dtype = {"float32": "", "float64": " float64", "bfloat16": " bfloat16"}[self.dtype]
        if self.kind == "step":
            return f"{cell}Cell B={self.B} H={self.H}{dtype}"
        if self.kind == "layer":
            shape = f"{self.layers}-layer bidir" if self.bidirectional else f"{self.layers}-layer"
            if self.B > 1:
                return f"{cell} T={self.T} B={self.B} H={self.H} {shape}{dtype}"
            return f"{cell} stream{self.T} {shape}{dtype}"
        return f"{cell}Cell decode V={self.vocab} H={self.H}, {self.T} tokens{dtype}"

    def id(self, threads):
        """Stable key of the case at a thread count, to match runs in `compare`."""
        return f"latency/{self.name}/{self.mode}/{threads}t"


def latency_cases(scale):
    """Every case of the group at `scale` (a Scale), in run order."""
    cases = [LatencyCase("step", cell, 1, B, H, H, mode)
             for cell in ("lstm", "gru", "rnn")
             for H in scale.step_hidden for B in scale.step_batches
             for mode in ("fwd", "fwd+bwd")]
    H = scale.stream_hidden
    for cell in ("lstm", "gru"):
        for layers, bidirectional in ((1, False), (2, True)):
            shape = dict(layers=layers, bidirectional=bidirectional)
            cases.append(LatencyCase("layer", cell, 1, 1, H, H, "fwd", **shape))
            # The whole sequence also with grad: the batch-1 training step.
            cases += [LatencyCase("layer", cell, scale.stream_steps, 1, H, H, mode, **shape)
                      for mode in ("fwd", "fwd+bwd")]
    # pytorch/examples' word_language_model: nn.LSTM(200, 200, 2) on batches
    # of 20 sequences of 35 tokens, forward and the training step's.
    T, B, H = scale.word_lm
    cases += [LatencyCase("layer", "lstm", T, B, H, H, mode, layers=2)
              for mode in ("fwd", "fwd+bwd")]
    cases.append(LatencyCase("decode", "lstm", scale.tokens, 1, scale.embed,
                             scale.decode_hidden, "fwd", vocab=scale.vocab))
    # Other dtypes at the smallest sizes: the bfloat16 step (fusedrnn in
    # bfloat16 against torch.nn's float32 cell), float64 cells and a
    # float64 batch-1 stream (both in float64), and the float64 cells at
    # the odd size where the issue on small batches measured 3.1x torch.nn.
    H, B = scale.step_hidden[0], scale.step_batches[-1]
    cases += [LatencyCase("step", cell, 1, 1, H, H, "fwd", dtype="bfloat16")
              for cell in ("lstm", "gru", "rnn")]
    cases += [LatencyCase("step", "lstm", 1, batch, H, H, mode, dtype="float64")
              for batch in (1, B) for mode in ("fwd", "fwd+bwd")]
    cases += [LatencyCase("layer", "lstm", scale.stream_steps, 1, H, H, mode, dtype="float64")
              for mode in ("fwd", "fwd+bwd")]
    B, H = scale.float64_cell
    cases += [LatencyCase("step", cell, 1, B, H, H, mode, dtype="float64")
              for cell in ("lstm", "gru") for mode in ("fwd", "fwd+bwd")]
    return cases
