#!/usr/bin/env python3
"""soak_plot.py: chart bench/soak.sh's samples.

    python3 bench/soak_plot.py [bench/results/soak.tsv] [bench/results/soak-rss.png] [BEFORE.tsv]

Top panel: the relay's RSS over time, stacked against what the Go runtime
accounts for (heap in use, freed heap not yet returned, stacks, runtime
structures); the gap between the Go total and RSS is memory allocated
outside the Go heap. With a third argument, the RSS of an earlier run
(another build) is drawn dashed for comparison. Bottom panel: goroutines and open files. Needs
matplotlib: Debian's python3-matplotlib, installed with apt-get when
missing, as bench/plot.py does.
"""
import csv
import os
import subprocess
import sys

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-matplotlib goes

try:
    import matplotlib
except ImportError:
    if os.path.exists(SYSTEM_PYTHON) and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) \
            and not os.environ.get("PLOT_PY_REEXEC"):
        os.execve(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv, dict(os.environ, PLOT_PY_REEXEC="1"))
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-matplotlib"],
                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "bench/results/soak.tsv"
    dst = sys.argv[2] if len(sys.argv) > 2 else "bench/results/soak-rss.png"
    with open(src) as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f, delimiter="\t")]
    if not rows:
        sys.exit("soak_plot.py: no samples in " + src)
    t = [r["t_s"] / 60 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    parts = [("heap_inuse_mb", "Go heap in use"), ("heap_retained_mb", "Go heap freed, not returned"),
             ("stack_mb", "goroutine stacks"), ("go_other_mb", "Go runtime structures")]
    top.stackplot(t, *[[r[k] for r in rows] for k, _ in parts], labels=[n for _, n in parts], alpha=0.6)
    top.plot(t, [r["rss_mb"] for r in rows], color="black", linewidth=2, label="RSS")
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            before = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f, delimiter="\t")]
        top.plot([r["t_s"] / 60 for r in before], [r["rss_mb"] for r in before], color="gray",
                 linestyle="--", linewidth=1.5, label="RSS, " + os.path.basename(sys.argv[3]))
    top.set_ylabel("MB")
    top.set_title("kumogo relay under a steady load (bench/soak.sh)")
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    bottom.plot(t, [r["goroutines"] for r in rows], label="goroutines")
    bottom.plot(t, [r["fds"] for r in rows], label="open files")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper left", fontsize="small")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    print("soak_plot.py: wrote " + dst)


if __name__ == "__main__":
    main()
