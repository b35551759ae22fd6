"""Microbenchmarks of fusedrnn against torch.nn.

    python -m bench                    # default grid, every available device
    python -m bench --quick            # reduced grid, under a minute (CI smoke test)
    python -m bench --size 100,16,256,256 --mode fwd --out /tmp/runs
    python -m bench compare OLD.json NEW.json
    python -m bench latency            # small batches: cells, batch-1 streams, decoding

Each case (cell, size, input kind, dtype, device, mode) is timed for every
implementation in bench/impls.py; the terminal table, a JSON file and a PNG
plot go to --out (default bench/results/).

Layout: cells.py (the cells: one table entry each), cases.py (sizes, grids,
inputs, FLOPs), impls.py (what is compared, the timed step), measure.py
(timing, memory, machine limit), run.py (runs the cases), train.py (end-to-end
training), environment.py (machine and versions), report.py (table, JSON),
plot.py, compare.py, __main__.py (command line).

The latency group: latency_cases.py (its cases and sizes), latency_peers.py
(what is compared: torch.nn, fusedrnn, ONNX Runtime from onnx_peer.py,
torch's int8 LSTM/GRU), decode.py (the decoding loop), limits.py (each
case's limit on this machine), latency.py (runs it), latency_report.py.
"""
