"""Command line of the benchmark suite; see bench/__init__.py for usage."""
import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_OUT = Path(__file__).parent / "results"
RUN_MODES = ("fwd", "fwd+bwd", "train")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return _compare(argv[1:])
    if argv[:1] == ["latency"]:
        return _latency(argv[1:])
    if argv[:1] == ["features"]:
        return _features(argv[1:])
    return _run(argv)


def _compare(argv):
    parser = argparse.ArgumentParser(prog="python -m bench compare",
                                     description="What got faster or slower between two runs.")
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--threshold", type=float, default=0.05,
                        help="smallest relative change reported (default 0.05 = 5%%)")
    args = parser.parse_args(argv)
    # Imported here: comparing needs neither torch nor fusedrnn.
    from .compare import compare
    compare(args.old, args.new, args.threshold)
    return 0


def _latency(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench latency",
        description="Small-batch latency: one-step cells, batch-1 streams and a greedy "
                    "decoding loop, fusedrnn against torch.nn, ONNX Runtime and torch's "
                    "int8 LSTM, with each case's limit on this machine.")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                        help="torch thread counts to run at (default 1 2)")
    parser.add_argument("--min-run-time", type=float, default=0.5,
                        help="seconds of timing per case and implementation (default 0.5)")
    parser.add_argument("--skip", nargs="+", default=[], choices=["onnxruntime", "torch-int8"],
                        help="peers not to time")
    parser.add_argument("--kind", nargs="+", choices=["step", "layer", "decode"],
                        help="kinds of case to run (default all): step (the one-step "
                             "cells), layer (batch-1 streams), decode (the decoding loop)")
    parser.add_argument("--tiny", action="store_true",
                        help="every case at toy sizes, in seconds: checks the machinery "
                             "(the tests); its timings mean nothing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the JSON file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if min(args.threads) < 1:
        parser.error("--threads: counts must be at least 1")
    # Imported here, after parsing, so that --help and usage errors come fast.
    from .latency import run_latency
    from .latency_report import print_latency
    from .report import write_json

    document = run_latency("tiny" if args.tiny else "full", args.threads, args.min_run_time,
                           args.skip, argv, kinds=args.kind)
    date = datetime.fromisoformat(document["date"])
    path = args.out / f"latency-{date:%Y%m%d-%H%M%S}.json"
    write_json(document, path)
    print_latency(document)
    print(f"\nresults: {path}")
    return 0


def _features(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench features",
        description="What acts inside the recurrence: each regularizer against the plain "
                    "layer, LayerNormLSTM/GRU against the reference's per-step loop and the "
                    "plain fused layer (forward + backward, train mode).")
    parser.add_argument("--group", nargs="+", choices=["regularization", "layernorm"],
                        default=["regularization", "layernorm"])
    parser.add_argument("--compile", action="store_true",
                        help="also time the layer-norm loop under torch.compile (slow)")
    parser.add_argument("--min-run-time", type=float, default=0.5,
                        help="seconds of timing per case and implementation (default 0.5)")
    parser.add_argument("--tiny", action="store_true",
                        help="toy sizes, in seconds: checks the machinery (the tests)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the JSON file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    from .features import print_features, run_features
    from .report import write_json

    document = run_features("tiny" if args.tiny else "full", args.group, args.min_run_time,
                            args.compile, argv)
    date = datetime.fromisoformat(document["date"])
    path = args.out / f"features-{date:%Y%m%d-%H%M%S}.json"
    write_json(document, path)
    print_features(document)
    print(f"\nresults: {path}")
    return 0


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark fusedrnn against torch.nn. Filters take one or more values.",
        epilog="`python -m bench compare OLD.json NEW.json` compares two runs; "
               "`python -m bench latency` times small batches and `python -m bench features` "
               "the regularizers and layer-norm layers (each has its own --help).")
    parser.add_argument("--quick", action="store_true",
                        help="reduced grid (small and stream sizes, fp32), under a minute")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the JSON and PNG files (default {DEFAULT_OUT})")
    parser.add_argument("--cell", nargs="+", help="cells to run (default: all)")
    parser.add_argument("--size", nargs="+",
                        help="run exactly these sizes, standard names or custom T,B,I,H, "
                             "with every input kind (default: the grid's sizes)")
    parser.add_argument("--device", nargs="+", help="cpu, cuda (default: every available one)")
    parser.add_argument("--dtype", nargs="+",
                        help="filter the grid's dtypes; with --size, the dtypes to run "
                             "(default float32)")
    parser.add_argument("--mode", nargs="+", choices=RUN_MODES,
                        help="fwd (no grad), fwd+bwd, train (end to end); default all")
    parser.add_argument("--input", nargs="+", choices=("dense", "packed", "proj"),
                        help="input kinds: dense, PackedSequence, proj_size=H/2 (default all)")
    parser.add_argument("--skip", nargs="+", choices=["torch-native", "reference"],
                        help="implementations not to time (torch.nn's native bfloat16 LSTM "
                             "takes 19 s per fastrnns fwd+bwd call)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the reference under torch.compile (slow: compiling "
                             "takes about a minute per case)")
    parser.add_argument("--min-run-time", type=float,
                        help="seconds of timing per case and implementation "
                             "(default 0.5, 0.2 with --quick)")
    parser.add_argument("--train-steps", type=int,
                        help="training steps of the end-to-end case (default 100, 20 with --quick)")
    return parser


def _run(argv):
    parser = _parser()
    args = parser.parse_args(argv)
    # Imported here, after parsing, so that --help and usage errors come fast.
    from .cases import DTYPES, MODES, grid
    from .cells import CELLS
    from .environment import available_devices, describe
    from .impls import DEFAULT_IMPLS
    from .plot import write_plot
    from .report import print_run, write_json
    from .run import Progress, measure_peaks, run_case
    from .train import train_case

    devices = available_devices()
    for option, given, known in (("--cell", args.cell, CELLS), ("--device", args.device, devices),
                                 ("--dtype", args.dtype, DTYPES)):
        unknown = set(given or ()) - set(known)
        if unknown:
            parser.error(f"{option}: {', '.join(sorted(unknown))} unknown or not available here "
                         f"(choose from {', '.join(known)})")
    cells = args.cell or list(CELLS)
    devices = args.device or devices
    modes = args.mode or RUN_MODES
    min_run_time = args.min_run_time or (0.2 if args.quick else 0.5)
    train_steps = args.train_steps or (20 if args.quick else 100)
    impls = tuple(impl for impl in DEFAULT_IMPLS if impl not in (args.skip or ())) + \
        (("reference+compile",) if args.compile else ())

    try:
        cases = grid(cells, devices, quick=args.quick, sizes=args.size, dtypes=args.dtype,
                     inputs=args.input, modes=[mode for mode in modes if mode in MODES])
    except ValueError as error:
        parser.error(str(error))
    trains = [(cell, device) for cell in cells for device in devices] if "train" in modes else []
    if not cases and not trains:
        parser.error("no case matches these filters")

    started = datetime.now(timezone.utc)
    environment = describe()
    progress = Progress(len(cases) + len(trains))
    peaks = measure_peaks(cases, min_run_time, progress)
    records = []
    for case in cases:
        progress.step(case.id)
        peak = peaks[f"{case.device}/{case.dtype}"]["gflops"]
        records.append(run_case(case, impls, min_run_time, peak, progress))
    train_records = []
    for cell, device in trains:
        progress.step(f"{cell}/train/{device}: {train_steps} steps, torch.nn then fusedrnn")
        train_records.append(train_case(cell, device, train_steps))
    progress.note("done")

    document = {"schema": 1, "date": started.isoformat(timespec="seconds"), "argv": argv,
                **environment,
                "settings": {"quick": args.quick, "min_run_time_s": min_run_time,
                             "implementations": list(impls), "train_steps": train_steps},
                "peaks": peaks, "cases": records, "train": train_records}
    stem = args.out / f"bench-{started:%Y%m%d-%H%M%S}"
    write_json(document, stem.with_suffix(".json"))
    print_run(document)
    print(f"\nresults: {stem.with_suffix('.json')}")
    print(write_plot(document, stem.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
