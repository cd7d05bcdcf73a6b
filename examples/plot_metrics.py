"""Draw the loss and accuracy curves that the examples log (``--log-dir``) to a PNG, with matplotlib.

    python examples/train_resnet.py --log-dir runs/r18
    python examples/plot_metrics.py runs/r18                      # writes runs/r18/metrics.png
    python examples/plot_metrics.py runs/a runs/b -o compare.png  # several runs on the same axes

Reads ``metrics.jsonl`` (or ``metrics.csv``) written by
``distgraph.utils.metrics.MetricsLogger``. One panel per kind of metric: tags
containing "loss", tags containing "acc", and the learning rate; other tags are
drawn in a last panel. Needs matplotlib (``pip install matplotlib``); it draws
without a display (the Agg backend).

It checks its own result: it exits with an error when a run has no metrics,
and prints the path of the image and the series it drew.
"""
import argparse
import os
import sys

from distgraph.utils.metrics import CSV, JSONL, read_csv, read_jsonl

PANELS = (("loss", "loss"), ("accuracy", "acc"), ("learning rate", "lr"))


def load_series(run):
    """``{tag: (steps, values)}`` of one run directory (JSON lines preferred, CSV otherwise)."""
    if os.path.exists(os.path.join(run, JSONL)):
        series = {}
        for rec in read_jsonl(run):
            for tag, value in rec.items():
                if tag in ("step", "time") or not isinstance(value, (int, float)):
                    continue
                steps, values = series.setdefault(tag, ([], []))
                steps.append(rec["step"])
                values.append(value)
        return series
    if os.path.exists(os.path.join(run, CSV)):
        return read_csv(run)
    raise SystemExit(f"plot_metrics: {run} has neither {JSONL} nor {CSV}; pass the --log-dir of a training run")


def panel_of(tag):
    name = tag.rsplit("/", 1)[-1]
    for i, (_, key) in enumerate(PANELS):
        if name == key or (key != "lr" and key in name):
            return i
    return len(PANELS)


def plot(runs, out, title=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_run = {run: load_series(run) for run in runs}
    used = sorted({panel_of(tag) for series in per_run.values() for tag in series})
    if not used:
        raise SystemExit(f"plot_metrics: no metrics in {', '.join(runs)}")
    fig, axes = plt.subplots(1, len(used), figsize=(5 * len(used), 4), squeeze=False)
    drawn = []
    for ax, panel in zip(axes[0], used):
        for run, series in per_run.items():
            label_run = os.path.basename(os.path.normpath(run)) if len(runs) > 1 else ""
            for tag, (steps, values) in sorted(series.items()):
                if panel_of(tag) != panel:
                    continue
                ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3,
                        label=f"{label_run} {tag}".strip())
                drawn.append(f"{label_run}:{tag}" if label_run else tag)
        ax.set_title(PANELS[panel][0] if panel < len(PANELS) else "other")
        ax.set_xlabel("step")
        if panel == 2:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="log directories (--log-dir of the examples)")
    p.add_argument("-o", "--output", help="PNG to write (default: <first run>/metrics.png)")
    p.add_argument("--title")
    args = p.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("plot_metrics: needs matplotlib: pip install matplotlib")
    out = args.output or os.path.join(args.runs[0], "metrics.png")
    drawn = plot(args.runs, out, args.title)
    print(f"wrote {out}: {', '.join(drawn)}")


if __name__ == "__main__":
    main()
