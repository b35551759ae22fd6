"""The terminal tables of a latency run, one per thread count; works from
the JSON-ready document alone, like report.py."""
from .report import format_time, print_load_warning, ratio_cell, render


def print_latency(document):
    machine = document["machine"]
    print(f"\nLatency group on {machine['cpu']} ({machine['cpu_capability']}, "
          f"{machine['cores']} cores); load average (1, 5, 15 min) at the start "
          f"{_load(machine['load_average'])}, at the end "
          f"{_load(document.get('load_average_at_end'))}")
    print_load_warning(document)
    for name, why in document["settings"]["unavailable"].items():
        print(f"  not compared: {name}: {why}")
    print("  times: median +-IQR; fused/torch: fusedrnn's time over torch.nn's (below 1: "
          "fusedrnn is faster)\n  limit: the shortest time this machine allows, by its matmul "
          "rate or by reading the weights (bench/limits.py); %limit: limit / time")
    impls = list(dict.fromkeys(name for case in document["cases"] for name in case["results"]))

    for threads, rates in document["machines"].items():
        cases = [case for case in document["cases"] if str(case["threads"]) == threads]
        print(f"\n{threads} thread(s), load average {_load(rates.get('load_average'))}: "
              f"matmul {rates['matmul_gflops']:.0f} GFLOP/s ({rates['matmul_how']}), reads: "
              f"L2 {rates['l2_read_gbps']:.0f} GB/s, L3 {rates['l3_read_gbps']:.0f} GB/s "
              f"({rates['read_how']})")
        load = rates.get("load_average")
        if load and load[0] + int(threads) > machine["cores"] + 0.5:
            # torch's threads meet at the end of every parallel region: one
            # thread descheduled by another job stalls the call for a time slice.
            print(f"  WARNING: other jobs left fewer than {threads} core(s) free: the times "
                  "and rates below include waits for a core")
        print(render(*_table(cases, impls), left=2))
        _print_notes(cases)


def _load(load):
    return "unknown" if not load else ", ".join(f"{value:.2f}" for value in load)


def _table(cases, impls):
    headers = ["case", "mode", *impls, "fused/torch", "limit", "by",
               "fused %limit", "torch %limit"]
    rows = []
    for case in cases:
        results = case["results"]
        row = [case["name"], case["mode"]]
        row += [_time_cell(results.get(name)) for name in impls]
        row += [ratio_cell(case["fused_over_torch"]), format_time(case["limit"]["s"]),
                case["limit"]["by"], _share(results.get("fusedrnn")),
                _share(results.get("torch"))]
        rows.append(row)
    return headers, rows


def _time_cell(result):
    if result is None:
        return ""
    if "median_s" not in result:
        return "failed" if "error" in result else ""
    spread = 100 * result["iqr_s"] / result["median_s"]
    return f"{format_time(result['median_s'])} +-{spread:.0f}%"


def _share(result):
    if not result or "limit_over_time" not in result:
        return ""
    return f"{100 * result['limit_over_time']:.0f}%"


def _print_notes(cases):
    for case in cases:
        for name, result in case["results"].items():
            if "error" in result:
                print(f"  {case['id']} {name} failed: {result['error']}")
        fused = case["results"].get("fusedrnn", {})
        if fused.get("ops") == []:
            print(f"  {case['id']}: no fusedrnn kernel ran (its pure-PyTorch reference did)")
        if fused.get("same_tokens_as_torch") is False:
            print(f"  {case['id']}: fusedrnn generated other tokens than torch.nn "
                  "(rounding can flip a near-tie of the argmax)")
