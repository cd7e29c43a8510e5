#!/usr/bin/env python3
"""plot_scale.py: memory and throughput against queue depth and destination count.

    python3 bench/plot_scale.py [-o bench/results/scale.png] FILE.tsv...

Each FILE is a tab-separated table with a header. Its x column is the first
of `messages` (queue depth: bench/deepqueue.sh's deepqueue.tsv) or
`destinations` (destination count: the many-destination scenario's TSV)
that it has. From each row it plots:

  * memory: `rss_mb` (MB of RSS), and `rss_per_msg_b` (bytes of RSS per
    queued message) when present;
  * throughput: every column whose name ends in `rate` (messages/s:
    `delivery_rate`, `restart_enum_rate`, `rate`, ...).

Rows are grouped into lines by `series` if the file has it, otherwise by
`build` and `spool` (whichever it has). One row of panels per x kind:
memory on the left, throughput on the right, both x axes logarithmic.
Without FILE arguments it reads every bench/results/*/*.tsv and
bench/results/*.tsv with one of those x columns. Needs matplotlib (see
bench/plot.py, whose installer it uses).
"""
import csv
import glob
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import plot_deps  # noqa: E402  (imports matplotlib, installing it when missing)

import matplotlib.pyplot as plt  # noqa: E402

X_KINDS = [("messages", "queued messages (queue depth)"), ("destinations", "destination domains")]


def load(path):
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return None, []
    for x, _ in X_KINDS:
        if x in rows[0]:
            return x, rows
    return None, []


def series_of(row):
    if "series" in row:
        return row["series"]
    return " ".join(row[k] for k in ("build", "spool") if k in row) or "kumogo"


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def main(argv):
    out = os.path.join(here, "results", "scale.png")
    files = []
    i = 0
    while i < len(argv):
        if argv[i] in ("-o", "--out"):
            out = argv[i + 1]
            i += 2
            continue
        files.append(argv[i])
        i += 1
    if not files:
        files = sorted(glob.glob(os.path.join(here, "results", "*", "*.tsv")) + glob.glob(os.path.join(here, "results", "*.tsv")))
    by_kind = {}
    for f in files:
        x, rows = load(f)
        if x:
            by_kind.setdefault(x, []).extend(rows)
    kinds = [(x, label) for x, label in X_KINDS if x in by_kind]
    if not kinds:
        sys.exit("plot_scale.py: no table with a messages or destinations column among " + ", ".join(files))
    fig, axes = plt.subplots(len(kinds), 2, figsize=(12, 4.4 * len(kinds)), squeeze=False)
    for r, (x, label) in enumerate(kinds):
        rows = by_kind[x]
        mem, thr = axes[r][0], axes[r][1]
        per_msg = mem.twinx() if any(num(row.get("rss_per_msg_b")) is not None for row in rows) else None
        rate_cols = sorted({c for row in rows for c in row if c.endswith("rate") and num(row[c]) is not None})
        for s in sorted({series_of(row) for row in rows}):
            pts = sorted((num(row[x]), row) for row in rows if series_of(row) == s and num(row[x]))
            xs = [p[0] for p in pts]
            ys = [num(p[1].get("rss_mb")) for p in pts]
            if any(y is not None for y in ys):
                mem.plot(xs, ys, marker="o", label=f"{s}: RSS MB")
            if per_msg is not None:
                ys = [num(p[1].get("rss_per_msg_b")) for p in pts]
                per_msg.plot(xs, ys, marker="s", linestyle="--", label=f"{s}: RSS bytes / message")
            for c in rate_cols:
                ys = [num(p[1].get(c)) for p in pts]
                thr.plot(xs, ys, marker="o", label=f"{s}: {c.replace('_', ' ')}")
        for ax in (mem, thr):
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.grid(True, alpha=0.3)
            ax.set_ylim(bottom=0)
        mem.set_ylabel("RSS, MB")
        mem.set_title(f"memory against {label}", fontsize=10)
        if per_msg is not None:
            per_msg.set_ylabel("RSS bytes per queued message")
            per_msg.set_ylim(0, max(1100, per_msg.get_ylim()[1]))  # keep the target in view
            per_msg.axhline(1024, color="tab:red", linewidth=0.8, linestyle=":")
            h1, l1 = mem.get_legend_handles_labels()
            h2, l2 = per_msg.get_legend_handles_labels()
            mem.legend(h1 + h2, l1 + l2, fontsize=7)
        else:
            mem.legend(fontsize=7)
        thr.set_ylabel("messages / s")
        thr.set_title(f"throughput against {label}", fontsize=10)
        thr.legend(fontsize=7)
    fig.suptitle("kumogo at scale, 127.0.0.1, 2 shared CPUs (dotted: 1 KB per message target)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=90)
    print("plot_scale.py: wrote " + out)


if __name__ == "__main__":
    main(sys.argv[1:])
