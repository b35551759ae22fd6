"""`python -m bench compare OLD.json NEW.json`: what got faster or slower.

Cases are matched by id and implementation. A change counts only when it
exceeds both the threshold and the runs' own spread (mean relative IQR),
so that noise on a loaded machine is not reported as a change.
"""
from .report import colour, format_time, load_json, render


def compare(old_path, new_path, threshold):
    old, new = load_json(old_path), load_json(new_path)
    for label, path, document in (("old", old_path, old), ("new", new_path, new)):
        print(f"{label}: {path}  {document['date']}  torch {document['versions']['torch']}  "
              f"{document['machine']['cpu']}")
    for key in ("machine", "versions"):
        if old[key] != new[key]:
            print(f"note: the {key} differs between the runs; changes may come from it")

    old_times, new_times = _times(old), _times(new)
    verdicts = {"slower": [], "faster": []}
    unchanged = 0
    for key in old_times.keys() & new_times.keys():
        (before, spread_before), (after, spread_after) = old_times[key], new_times[key]
        change = after / before - 1
        noise = max(threshold, (spread_before + spread_after) / 2)
        if abs(change) <= noise:
            unchanged += 1
            continue
        verdicts["slower" if change > 0 else "faster"].append((change, *key, before, after))

    for verdict, rows in verdicts.items():
        if rows:
            print(f"\n{verdict} ({len(rows)}):")
            table = [[case, impl, format_time(before), format_time(after),
                      colour(f"{change:+.0%}", verdict == "faster")]
                     for change, case, impl, before, after in sorted(rows, key=_size_of_change)]
            print(render(["case", "implementation", "old", "new", "change"], table, left=2))
    print(f"\n{unchanged} unchanged (within {threshold:.0%} or the runs' spread)")
    for label, only in (("old", old_times.keys() - new_times.keys()),
                        ("new", new_times.keys() - old_times.keys())):
        if only:
            cases = sorted({case for case, _ in only})
            print(f"only in {label} ({len(only)} timings): {', '.join(cases)}")


def _size_of_change(row):
    return -abs(row[0])


def _times(document):
    """{(case id, implementation): (seconds, relative spread)} of a run.

    End-to-end records contribute their time per training step (no spread),
    so that for them too a lower number is better.
    """
    times = {}
    for case in document["cases"]:
        for impl, result in case["results"].items():
            if "median_s" in result:
                times[case["id"], impl] = (result["median_s"], result["iqr_s"] / result["median_s"])
    for record in document.get("train", []):
        for impl in ("torch", "fusedrnn"):
            times[record["id"], impl] = (1 / record[impl]["steps_per_s"], 0.0)
    return times
