"""The features group, `python -m bench features`: what acts inside the
recurrence, against what a user has without it.

  regularization  the training step (forward + backward, train mode) of a
                  fusedrnn LSTM / GRU with one of recurrent_dropout,
                  zoneout (LSTM: and cell_zoneout), weight_drop, or all of
                  them, against the same plain fusedrnn layer. Target: each
                  costs at most 10% more.
  layernorm       fusedrnn.LayerNormLSTM / LayerNormGRU against what a user
                  writes today, the reference's Python loop of per-step ops
                  (eager; under torch.compile with --compile), and against
                  fusedrnn.LSTM / GRU of the same size. Targets: forward +
                  backward at most 0.2x the eager loop and 1.3x the plain
                  fused layer.

Every implementation of a case is timed interleaved with the others
(measure.time_steps) on the same input and weights.
"""
from contextlib import nullcontext
from datetime import datetime, timezone

import torch

import fusedrnn

from .cases import SIZES
from .environment import describe
from .impls import make_step
from .measure import time_steps
from .run import Progress

REGULARIZERS = {
    "recurrent_dropout": dict(recurrent_dropout=0.25),
    "zoneout": dict(zoneout=0.1),
    "cell_zoneout": dict(zoneout=0.1, cell_zoneout=0.1),  # LSTM only
    "weight_drop": dict(weight_drop=0.5),
    "all": dict(recurrent_dropout=0.25, zoneout=0.1, weight_drop=0.5),
}
LAYERS = {"lstm": (fusedrnn.LSTM, fusedrnn.LayerNormLSTM),
          "gru": (fusedrnn.GRU, fusedrnn.LayerNormGRU)}
SCALES = {
    "full": {"regularization": ("small", "medium", "fastrnns"),
             "layernorm": ("small", "medium", "fastrnns")},
    # For the smoke test: tiny sizes; its timings mean nothing.
    "tiny": {"regularization": ((3, 2, 4, 8),), "layernorm": ((3, 2, 4, 8),)},
}


def _shape(size):
    return (size, SIZES[size]) if isinstance(size, str) else (",".join(map(str, size)), size)


def _timed(modules, shape, progress, label, min_run_time):
    """Median seconds of one forward + backward of each module (train mode)."""
    T, B, I, H = shape
    generator = torch.Generator().manual_seed(0)
    leaf = torch.randn(T, B, I, generator=generator).requires_grad_(True)
    steps = {}
    for name, module in modules.items():
        step, _ = make_step(module.train(), leaf, leaf, "fwd+bwd", H)
        step()  # warm-up (and, under torch.compile, the compilation)
        steps[name] = (step, nullcontext)
    progress.step(label)
    return {name: timing["median_s"] for name, timing in time_steps(steps, min_run_time).items()}


def _regularization_case(cell, size, progress, min_run_time):
    name, shape = _shape(size)
    plain_class, _ = LAYERS[cell]
    torch.manual_seed(0)
    plain = plain_class(shape[2], shape[3])
    modules = {"plain": plain}
    for reg_name, options in REGULARIZERS.items():
        if "cell_zoneout" in options and cell != "lstm":
            continue
        module = plain_class(shape[2], shape[3], **options)
        module.load_state_dict(plain.state_dict())
        modules[reg_name] = module
    times = _timed(modules, shape, progress, f"regularization {cell} {name}", min_run_time)
    return {"group": "regularization", "cell": cell, "size": name, "shape": list(shape),
            "seconds": times,
            "ratio_to_plain": {k: v / times["plain"] for k, v in times.items() if k != "plain"}}


def _layernorm_case(cell, size, progress, min_run_time, compile_reference):
    name, shape = _shape(size)
    plain_class, layernorm_class = LAYERS[cell]
    torch.manual_seed(0)
    fused = layernorm_class(shape[2], shape[3])
    eager = layernorm_class(shape[2], shape[3])
    eager.load_state_dict(fused.state_dict())
    eager._force_reference = True
    modules = {"fusedrnn": fused, "eager loop": eager,
               "plain fused": plain_class(shape[2], shape[3])}
    if compile_reference:
        torch.compiler.reset()
        modules["compiled loop"] = torch.compile(eager)
    times = _timed(modules, shape, progress, f"layernorm {cell} {name}", min_run_time)
    return {"group": "layernorm", "cell": cell, "size": name, "shape": list(shape),
            "seconds": times,
            "ratio": {k: times["fusedrnn"] / v for k, v in times.items() if k != "fusedrnn"}}


def run_features(scale_name, groups, min_run_time, compile_reference, argv):
    """The JSON-ready document of one run of the group; progress on stderr."""
    started = datetime.now(timezone.utc)
    environment = describe()
    scale = SCALES[scale_name]
    plan = [(group, cell, size) for group in groups for size in scale[group]
            for cell in LAYERS]
    progress = Progress(len(plan))
    records = []
    for group, cell, size in plan:
        if group == "regularization":
            records.append(_regularization_case(cell, size, progress, min_run_time))
        else:
            records.append(_layernorm_case(cell, size, progress, min_run_time,
                                           compile_reference))
    progress.note("done")
    return {"schema": 1, "group": "features", "date": started.isoformat(timespec="seconds"),
            "argv": argv, **environment, "settings": {"min_run_time_s": min_run_time},
            "cases": records}


def print_features(document):
    load = document["machine"].get("load_average")
    print(f"\nfeatures, {document['machine']['cpu']}, {document['machine']['torch_threads']} "
          f"threads, load at start {load}")
    for record in document["cases"]:
        times = record["seconds"]
        if record["group"] == "regularization":
            cells = "  ".join(f"{k} {v:.2f}x" for k, v in record["ratio_to_plain"].items())
            print(f"  {record['cell']:4} {record['size']:9} plain {times['plain'] * 1e3:8.2f} ms"
                  f"  over plain: {cells}  (target <= 1.10x)")
        else:
            cells = "  ".join(f"vs {k} {v:.2f}x" for k, v in record["ratio"].items())
            print(f"  LayerNorm{record['cell'].upper():4} {record['size']:9} "
                  f"{times['fusedrnn'] * 1e3:8.2f} ms  {cells}  "
                  "(targets: <= 0.2x the eager loop, <= 1.3x plain fused)")
