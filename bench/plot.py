"""PNG plot of fusedrnn's speed relative to torch.nn, per size and mode.

matplotlib is optional (the `bench` extra of pyproject.toml): without it the
run still prints and writes its JSON, and says how to get the plot.
"""


def write_plot(document, path):
    """Writes the plot to `path`; returns a line saying what happened."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        return "no plot: matplotlib is not installed (pip install 'fusedrnn[bench]')"

    panels = {}  # (cell, device) -> {label: {mode: speed-up}}
    for case in document["cases"]:
        fused, torch = case["results"].get("fusedrnn", {}), case["results"].get("torch", {})
        if "median_s" not in fused or "median_s" not in torch:
            continue
        label = f"{case['size']}\n{case['input']}" + ("" if case["dtype"] == "float32"
                                                       else f"\n{case['dtype']}")
        panel = panels.setdefault((case["cell"], case["device"]), {})
        panel.setdefault(label, {})[case["mode"]] = torch["median_s"] / fused["median_s"]
    if not panels:
        return "no plot: no case has both a fusedrnn and a torch.nn time"

    figure = Figure(figsize=(max(6, 1.1 * max(map(len, panels.values()))), 4 * len(panels)),
                    layout="constrained")
    for axes, ((cell, device), panel) in zip(figure.subplots(len(panels), squeeze=False)[:, 0],
                                             panels.items()):
        _draw_panel(axes, panel)
        axes.set_title(f"{cell.upper()} on {device}: fusedrnn speed relative to torch.nn")
    figure.savefig(path, dpi=120)
    return f"plot: {path}"


def _draw_panel(axes, panel):
    modes = sorted({mode for speeds in panel.values() for mode in speeds})
    width = 0.8 / len(modes)
    for index, mode in enumerate(modes):
        positions = [i + (index - (len(modes) - 1) / 2) * width for i in range(len(panel))]
        speeds = [speeds.get(mode, float("nan")) for speeds in panel.values()]
        bars = axes.bar(positions, speeds, width, label=mode)
        axes.bar_label(bars, fmt="%.2f", fontsize=8)
    axes.axhline(1, color="black", linewidth=0.8)
    axes.set_xticks(range(len(panel)), list(panel))
    axes.set_ylabel("torch.nn time / fusedrnn time\n(above 1: fusedrnn is faster)")
    axes.legend()
