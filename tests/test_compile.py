"""torch.compile (fullgraph, dynamic shapes) and torch.export of models that
contain fusedrnn.LSTM, on the CPU and, where there is one, on a GPU."""
import pytest
import torch
from torch import nn

import fusedrnn
from helpers import requires_gpu


class Classifier(nn.Module):
    """A bidirectional two-layer LSTM feeding a Linear: many-to-one."""

    def __init__(self, proj_size=0):
        super().__init__()
        self.rnn = fusedrnn.LSTM(4, 5, 2, batch_first=True, bidirectional=True,
                                 proj_size=proj_size)
        self.head = nn.Linear(2 * (proj_size or 5), 3)

    def forward(self, x):
        output, _ = self.rnn(x)
        return self.head(output[:, -1])


DEVICES = ["cpu", pytest.param("cuda", marks=requires_gpu)]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("proj_size", [0, 2])
def test_compiled_forward_and_backward_match_eager(proj_size, device):
    torch.manual_seed(0)
    model = Classifier(proj_size).to(device)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 6, 4, device=device, requires_grad=True)

    def grads(fn):
        x.grad = None
        model.zero_grad()
        out = fn(x)
        out.square().sum().backward()
        return [out, x.grad.clone()] + [p.grad.clone() for p in model.parameters()]

    for actual, expected in zip(grads(compiled), grads(model)):
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_dynamic_shapes_compile_once():
    torch.manual_seed(0)
    model = Classifier()
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend=counting_backend)
    # (Sizes 0 and 1 are always specialised by dynamo, so they are not drawn.)
    for batch, steps in [(2, 3), (3, 5), (5, 8), (4, 2)]:
        x = torch.randn(batch, steps, 4)
        torch.testing.assert_close(compiled(x), model(x))
    assert len(graphs) == 1


@pytest.mark.parametrize("device", DEVICES)
def test_export_matches_eager(device):
    torch.manual_seed(0)
    model = Classifier().eval().to(device)
    batch = torch.export.Dim("batch", min=1)
    steps = torch.export.Dim("steps", min=2)
    exported = torch.export.export(model, (torch.randn(2, 3, 4, device=device),),
                                   dynamic_shapes=({0: batch, 1: steps},))
    # Export keeps the stack op (CompositeImplicitAutograd custom ops stay
    # whole); decomposing it gives the layer ops it calls.
    decomposed = exported.run_decompositions()
    for program, op in ((exported, "fusedrnn.lstm_stack_forward"),
                        (decomposed, "fusedrnn.lstm_layer_forward")):
        assert any(op in str(node.target) for node in program.graph.nodes)
        x = torch.randn(3, 7, 4, device=device)
        torch.testing.assert_close(program.module()(x), model(x))
