"""The terminal tables and the JSON file of a run.

Works from the JSON-ready run document alone (no torch needed), so that
`compare` can reuse the formatting.
"""
import json
import os
import sys

RATIO_TOLERANCE = 0.05  # ratios within 5% of 1 are not highlighted


def write_json(document, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def load_json(path):
    with open(path) as file:
        return json.load(file)


# --- formatting ---------------------------------------------------------------

def format_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def colour(text, good):
    """`text` in bold green (good=True) or red (good=False) on a terminal;
    unchanged in a log or when good is None."""
    if good is None or not sys.stdout.isatty() or "NO_COLOR" in os.environ:
        return text
    return f"\033[{'32' if good else '31'};1m{text}\033[0m"


def ratio_cell(ratio):
    """A fused/baseline time ratio: lower is better, highlighted when clear."""
    if ratio is None:
        return ""
    good = None if abs(ratio - 1) <= RATIO_TOLERANCE else ratio < 1
    return colour(f"{ratio:.2f}x", good)


def render(headers, rows, left=1):
    """Aligned text table: the first `left` columns left-aligned, the rest
    right-aligned. Cells may carry colour codes, which take no width."""
    widths = [max(len(_plain(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(row):
        cells = []
        for i, (cell, width) in enumerate(zip(row, widths)):
            pad = " " * (width - len(_plain(cell)))
            cells.append(cell + pad if i < left else pad + cell)
        return "  ".join(cells).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _plain(text):
    """`text` without colour codes, to measure its width."""
    while "\033[" in text:
        start = text.index("\033[")
        text = text[:start] + text[text.index("m", start) + 1:]
    return text


# --- the run tables -------------------------------------------------------------

FALLBACK_MARK = "*"


def print_run(document):
    """The tables of a run: one per (cell, device), then the end-to-end runs."""
    impls = list(dict.fromkeys(name for case in document["cases"] for name in case["results"]))
    groups = {}
    for case in document["cases"]:
        groups.setdefault((case["cell"], case["device"]), []).append(case)

    print_load_warning(document)

    for (cell, device), cases in groups.items():
        print(f"\n{cell.upper()} on {device} ({_device_name(document, device)})")
        for key, peak in document["peaks"].items():
            if key.startswith(f"{device}/"):
                print(f"  limit {key.split('/')[1]}: {peak['gflops']:.0f} GFLOP/s ({peak['how']})")
        print(f"  sizes (T,B,I,H): {_size_legend(cases)}")
        print("  times: median +-IQR; ratios are fusedrnn time / torch.nn time, "
              "lower is better (below 1: fusedrnn is faster)")
        print(render(*_case_table(cases, impls), left=4))
        _print_notes(cases)

    if document.get("train"):
        print("\nEnd to end: Embedding -> recurrent layer -> Linear, many-to-one training")
        print(render(*_train_table(document["train"]), left=1))


def print_load_warning(document):
    """A warning when other jobs loaded the machine as the run started."""
    load = document["machine"].get("load_average")
    if load and load[0] > document["machine"]["cores"] / 2:
        print(f"\nWARNING: the machine was busy when the run started (load average "
              f"{load[0]:.1f} on {document['machine']['cores']} cores): CPU timings are unreliable")


def _case_table(cases, impls):
    on_gpu = any("cuda_peak_bytes" in result
                 for case in cases for result in case["results"].values())
    headers = ["size", "input", "dtype", "mode", *impls,
               "fused/torch", "fused/native", "fused GFLOP/s (%limit)", "saved fused/torch",
               *(["GPU peak fused/torch"] if on_gpu else [])]
    rows = []
    for case in cases:
        results = case["results"]
        fused, baseline = results.get("fusedrnn", {}), results.get("torch", {})
        row = [case["size"], case["input"], case["dtype"], case["mode"]]
        row += [_time_cell(results.get(name), name == "fusedrnn") for name in impls]
        row += [ratio_cell(_ratio(fused, baseline)),
                ratio_cell(_ratio(fused, results.get("torch-native")))]
        row.append(f"{fused['gflops']:.1f} ({fused['pct_of_peak']:.0f}%)"
                   if "gflops" in fused else "")
        row.append(_bytes_pair(fused, baseline, "saved_bytes"))
        if on_gpu:
            row.append(_bytes_pair(fused, baseline, "cuda_peak_bytes"))
        rows.append(row)
    return headers, rows


def _time_cell(result, is_fused):
    if result is None:
        return ""
    if "error" in result:
        return "failed"
    spread = 100 * result["iqr_s"] / result["median_s"]
    text = f"{format_time(result['median_s'])} +-{spread:.0f}%"
    if is_fused and result.get("ops") == []:
        text += FALLBACK_MARK
    return text


def _print_notes(cases):
    fallback = [case["id"] for case in cases
                if case["results"].get("fusedrnn", {}).get("ops") == []]
    if fallback:
        print(f"  {FALLBACK_MARK} no fusedrnn kernel ran: fusedrnn used its pure-PyTorch "
              "reference for this input")
    for case in cases:
        for name, result in case["results"].items():
            if "error" in result:
                print(f"  {case['id']} {name} failed: {result['error']}")


def _train_table(records):
    headers = ["model", "device", "steps", "torch steps/s", "fusedrnn steps/s", "fused/torch",
               "max |loss diff|", "final loss"]
    rows = [[r["model"], r["device"], str(r["steps"]), f"{r['torch']['steps_per_s']:.1f}",
             f"{r['fusedrnn']['steps_per_s']:.1f}",
             ratio_cell(r["torch"]["steps_per_s"] / r["fusedrnn"]["steps_per_s"]),
             f"{r['max_loss_diff']:.2e}", f"{r['fusedrnn']['final_loss']:.4f}"]
            for r in records]
    return headers, rows


def _ratio(fused, baseline):
    if not fused or not baseline or "median_s" not in fused or "median_s" not in baseline:
        return None
    return fused["median_s"] / baseline["median_s"]


def _size_legend(cases):
    shapes = {case["size"]: f"{case['T']},{case['B']},{case['I']},{case['H']}" for case in cases}
    return "  ".join(name if name == shape else f"{name}={shape}" for name, shape in shapes.items())


def _bytes_pair(fused, baseline, key):
    """"fused / torch.nn" sizes of `key`, blank when neither has it."""
    if key not in fused and key not in baseline:
        return ""
    return f"{_bytes(fused.get(key))} / {_bytes(baseline.get(key))}"


def _bytes(size):
    if size is None:
        return "-"
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def _device_name(document, device):
    machine = document["machine"]
    if device == "cpu":
        return f"{machine['cpu']}, {machine['cpu_capability']}, {machine['torch_threads']} threads"
    return ", ".join(machine["gpus"]) or device
