"""The implementations the latency group compares, and the step each times.

Every implementation of a case is built from one torch.nn module (same
weights):
  torch        torch.nn as shipped
  fusedrnn     its fusedrnn twin
  onnxruntime  ONNX Runtime's LSTM / GRU / RNN node (bench/onnx_peer.py);
               forward only, where onnx and onnxruntime import
  torch-int8   torch.ao.nn.quantized.dynamic.LSTM / GRU: int8 weights,
               float activations; forward of the layer cases only, where
               this torch still has it
"""
import copy
import warnings
from functools import partial

import torch

from . import onnx_peer
from .cells import CELLS, fused_twin
from .decode import decoder_twins
from .impls import make_step
from .measure import probe

PEERS = ("torch", "fusedrnn", "onnxruntime", "torch-int8")


def build_steps(case, threads, skip=()):
    """The timed calls of `case` on `threads` threads: ({name: step}, notes).

    notes[name] holds what an implementation says beyond its time: "error"
    when building it or its first call failed (the run goes on without
    it), fusedrnn's "ops" (empty: its pure-PyTorch fallback ran, not its
    kernel), and the decoding loop's agreement with torch.nn.
    """
    builder = {"step": _step_case, "layer": _layer_case, "decode": _decode_case}[case.kind]
    makers, notes = builder(case, threads)
    steps = {}
    for name, make in makers.items():
        if name in skip:
            continue
        try:
            step = make()
            step()  # warm-up: oneDNN primitives, allocator caches, ONNX Runtime's first run
        except Exception as error:  # noqa: BLE001 - one peer failing must not end the run
            message = f"{type(error).__name__}: {str(error).strip()}".splitlines()[0][:300]
            notes.setdefault(name, {})["error"] = message
            continue
        steps[name] = step
    if "fusedrnn" in steps:
        ops = probe(steps["fusedrnn"], [], "cpu", namespace="fusedrnn")["ops"]
        notes.setdefault("fusedrnn", {})["ops"] = ops
    return steps, notes


def _dtypes(case):
    """(torch.nn's dtype, fusedrnn's dtype) of `case`."""
    return getattr(torch, case.torch_dtype), getattr(torch, case.dtype)


def _step_case(case, threads):
    """One step of nn.LSTMCell / GRUCell / RNNCell from a random state."""
    torch.manual_seed(0)
    torch_dtype, fused_dtype = _dtypes(case)
    module = CELLS[case.cell].step_cls(case.I, case.H, dtype=torch_dtype)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(case.B, case.I, generator=generator, dtype=torch_dtype)
    states = [torch.randn(case.B, case.H, generator=generator, dtype=torch_dtype)
              for _ in range(2 if case.cell == "lstm" else 1)]
    makers = {"torch": lambda: _cell_step(module, x, states, case.mode),
              "fusedrnn": lambda: _cell_step(
                  fused_twin(module).to(fused_dtype), x.to(fused_dtype),
                  [state.to(fused_dtype) for state in states], case.mode)}
    if case.mode == "fwd" and case.dtype == "float32" and onnx_peer.available():
        makers["onnxruntime"] = lambda: _onnx_step(module, case.cell, threads, x, *states)
    return makers, {}


def _cell_step(cell, x, states, mode):
    """One call of `cell`: its forward, or forward + backward with respect to
    the input, the states and the parameters (a training step's share)."""
    if mode == "fwd":
        hx = tuple(states) if len(states) == 2 else states[0]

        def step():
            with torch.no_grad():
                cell(x, hx)
        return step

    x = x.detach().requires_grad_()
    states = [state.detach().requires_grad_() for state in states]
    hx = tuple(states) if len(states) == 2 else states[0]
    leaves = [x, *states, *cell.parameters()]
    # One output gradient per new state, drawn outside the timed region.
    grad_outputs = [torch.randn_like(state) for state in states]

    def step():
        outputs = cell(x, hx)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        # autograd.grad rather than backward(): nothing accumulates in .grad.
        torch.autograd.grad(outputs, leaves, grad_outputs)
    return step


def _layer_case(case, threads):
    """A whole nn.LSTM / nn.GRU call on a (T, 1, I) stream from zero states."""
    torch.manual_seed(0)
    torch_dtype, fused_dtype = _dtypes(case)
    module = CELLS[case.cell].torch_cls(case.I, case.H, num_layers=case.layers,
                                        bidirectional=case.bidirectional, dtype=torch_dtype)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(case.T, case.B, case.I, generator=generator, dtype=torch_dtype)
    x.requires_grad_(case.mode == "fwd+bwd")
    fused_x = x.detach().to(fused_dtype).requires_grad_(case.mode == "fwd+bwd")
    width = case.directions * case.H

    def timed(built, x):
        return make_step(built, x, x, case.mode, width)[0]

    makers = {"torch": lambda: timed(module, x),
              "fusedrnn": lambda: timed(fused_twin(module).to(fused_dtype), fused_x)}
    if case.mode == "fwd" and case.dtype == "float32":
        if onnx_peer.available():
            makers["onnxruntime"] = lambda: _onnx_step(module, case.cell, threads, x)
        makers["torch-int8"] = lambda: timed(_int8_twin(module), x)
    return makers, {}


def _onnx_step(module, cell, threads, *inputs):
    peer = onnx_peer.OnnxRecurrent(module, cell, threads)
    feeds = peer.feeds(*inputs)
    return partial(peer.run, feeds)


def _int8_twin(module):
    """torch's dynamically quantized twin of an nn.LSTM / nn.GRU."""
    from torch.ao.nn.quantized import dynamic
    from torch.ao.quantization import default_dynamic_qconfig

    float_module = copy.deepcopy(module)
    float_module.qconfig = default_dynamic_qconfig
    quantized = {"LSTM": dynamic.LSTM, "GRU": dynamic.GRU}[module.mode]
    with warnings.catch_warnings():
        # torch deprecates its quantized tensors; the warning tells the
        # reader of a benchmark nothing.
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
        return quantized.from_float(float_module)


def _decode_case(case, threads):
    """The greedy decoding loop, torch.nn's modules against fusedrnn's."""
    baseline, fused = decoder_twins(case)
    # Same weights, so the same tokens, unless rounding flips a near-tie.
    same = torch.equal(baseline.generate(case.T, case.B), fused.generate(case.T, case.B))
    makers = {"torch": lambda: partial(baseline.generate, case.T, case.B),
              "fusedrnn": lambda: partial(fused.generate, case.T, case.B)}
    return makers, {"fusedrnn": {"same_tokens_as_torch": same}}
