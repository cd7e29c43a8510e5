#!/usr/bin/env python3
"""plot.py: draw throughput against concurrency from sink-matrix.sh's TSV.

    python3 bench/plot.py [bench/results/sink-matrix.tsv] [bench/results/sink-concurrency.png]

One figure, one panel per generator and body size, one line per server
(median rate, the bar spans min-max of the runs), log-scaled concurrency.
Needs matplotlib: Debian's python3-matplotlib, installed with apt-get when
missing (as root, or with passwordless sudo).
"""
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_deps  # noqa: E402,F401  (imports matplotlib, installing it when missing)

import matplotlib.pyplot as plt  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "results", "sink-matrix.tsv")
dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "results", "sink-concurrency.png")

rows = list(csv.DictReader(open(src), delimiter="\t"))
if not rows:
    sys.exit("plot.py: no rows in " + src)

GEN_LABEL = {
    "tg-data": "traffic-gen, DATA",
    "tg-bdat": "traffic-gen --bdat",
    "smtp-source": "smtp-source, DATA (connection per message)",
}
STYLE = {
    "kumogo": dict(color="tab:blue", marker="o", linewidth=2.2),
    "baresink": dict(color="tab:gray", marker="s", linestyle="--"),
    "smtp-sink": dict(color="tab:orange", marker="^"),
}


def size_label(b):
    b = int(b)
    return f"{b // 1024} KiB" if b % 1024 == 0 else f"{b} B"


gens = [g for g in GEN_LABEL if any(r["gen"] == g for r in rows)]
gens += sorted({r["gen"] for r in rows} - set(gens))
sizes = sorted({int(r["size"]) for r in rows}, reverse=True)
servers = [s for s in STYLE if any(r["server"] == s for r in rows)]

fig, axes = plt.subplots(len(sizes), len(gens), figsize=(5.2 * len(gens), 4.2 * len(sizes)), squeeze=False)
for i, size in enumerate(sizes):
    for j, gen in enumerate(gens):
        ax = axes[i][j]
        for s in servers:
            pts = sorted(
                (int(r["conc"]), float(r["rate_median"]), float(r["rate_min"]), float(r["rate_max"]))
                for r in rows
                if r["gen"] == gen and int(r["size"]) == size and r["server"] == s
            )
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            lo = [p[1] - p[2] for p in pts]
            hi = [p[3] - p[1] for p in pts]
            ax.errorbar(x, y, yerr=[lo, hi], capsize=3, label=s, **STYLE.get(s, {}))
        ax.set_xscale("log")
        concs = sorted({int(r["conc"]) for r in rows})
        ax.set_xticks(concs)
        ax.set_xticklabels([f"{c:,}" for c in concs])
        ax.set_ylim(bottom=0)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(f"{GEN_LABEL.get(gen, gen)}, {size_label(size)}", fontsize=10)
        ax.set_xlabel("concurrent connections")
        if j == 0:
            ax.set_ylabel("messages / s (median, min-max)")
        ax.legend(fontsize=8)
runs = rows[0].get("runs", "?")
fig.suptitle(f"kumogo sink.lua vs smtp-sink vs bare go-smtp sink, 127.0.0.1, 2 CPUs ({runs} run(s) per point)")
fig.tight_layout()
os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
fig.savefig(dst, dpi=90)
print("plot.py: wrote " + dst)
