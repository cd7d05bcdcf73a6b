"""Draw a DistributedDataParallel timeline (the Chrome trace from dg.profiler) as a PNG.

    distgraph-run -n 2 examples/train_resnet.py --width 16 --steps 12 --timeline trace.json
    python examples/plot_timeline.py trace.json timeline.png

One row group per rank: forward, backward, each bucket's all-reduce (launch to
completion) and the final wait, for the last few steps; the title gives the
share of all-reduce time hidden behind backward.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from distgraph import profiler  # noqa: E402

ROWS = ["forward", "backward", "allreduce", "wait"]
COLORS = {"forward": "#4c72b0", "backward": "#55a868", "allreduce": "#c44e52", "wait": "#8172b2"}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace")
    p.add_argument("png")
    p.add_argument("--steps", type=int, default=2, help="how many of the last steps to draw")
    a = p.parse_args()
    events = [e for e in json.load(open(a.trace))["traceEvents"] if e.get("ph") == "X" and e["cat"] in ROWS]
    ranks = sorted({e["pid"] for e in events})
    starts = sorted(e["ts"] for e in events if e["cat"] == "forward" and e["pid"] == ranks[0])
    t0 = starts[-a.steps] if len(starts) >= a.steps else starts[0]
    fig, ax = plt.subplots(figsize=(10, 1 + 1.2 * len(ranks)))
    labels = []
    for i, r in enumerate(ranks):
        for j, cat in enumerate(ROWS):
            y = i * (len(ROWS) + 1) + j
            labels.append((y, f"rank {r} {cat}"))
            spans = [((e["ts"] - t0) / 1e3, e["dur"] / 1e3) for e in events
                     if e["pid"] == r and e["cat"] == cat and e["ts"] >= t0]
            ax.broken_barh(spans, (y - 0.4, 0.8), color=COLORS[cat])
    hidden = profiler.overlap_fraction([e for e in events if e["pid"] == ranks[0]])
    ax.set_yticks([y for y, _ in labels], [t for _, t in labels])
    ax.set_xlabel("ms")
    ax.invert_yaxis()
    ax.set_title(f"DDP timeline, last {a.steps} steps: {hidden:.0%} of all-reduce time inside backward (rank 0)")
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)
    print(f"wrote {a.png}; all-reduce hidden behind backward: {hidden:.0%}")


if __name__ == "__main__":
    main()
