"""``mrihpc results RUN --plot out.png``: the curves of every point of a sweep in one figure
(training loss and learning rate per logged step, the validation metric per epoch), read from
the points' metrics.jsonl; no server needed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: login nodes have no display
import matplotlib.pyplot as plt  # noqa: E402

from mrihpc.paths import RunPaths, read_jsonl  # noqa: E402


def plot_curves(run: RunPaths, manifest: dict, metric: str, out: Path) -> dict[str, dict[str, int]]:
    """Write the figure to ``out``; returns panel -> point name -> number of points drawn."""
    panels = {
        "training loss": ("step", "step", "loss"),
        f"validation {metric}": ("epoch", "epoch", f"val_{metric}"),
        "learning rate": ("step", "step", "lr"),
    }
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 4.5), constrained_layout=True
    )
    drawn: dict[str, dict[str, int]] = {title: {} for title in panels}
    for p in manifest["points"]:
        records = read_jsonl(run.point(p["index"]).metrics, dict)
        for ax, (title, (kind, xkey, ykey)) in zip(axes, panels.items()):
            rows = [
                r
                for r in records
                if r.get("kind") == kind  # numbers only: an edited line is not plotted
                and all(isinstance(r.get(k), (int, float)) for k in (xkey, ykey))
            ]
            if not rows:
                continue
            x = [r[xkey] + (1 if xkey == "epoch" else 0) for r in rows]
            label = (
                f"{p['index']}: {p['name']}"  # the index too: a salvaged run's names are all "?"
            )
            ax.plot(
                x,
                [r[ykey] for r in rows],
                label=label,
                marker="o" if kind == "epoch" else None,
                ms=3,
            )
            drawn[title][label] = len(rows)
    for ax, (title, (_, xkey, _)) in zip(axes, panels.items()):
        ax.set_title(title)
        ax.set_xlabel(xkey)
        ax.grid(alpha=0.3)
        if drawn[title]:
            ax.legend(fontsize="small")
    axes[0].set_yscale("log")
    fig.suptitle(
        f"{manifest.get('name', run.root.parent.name)} {manifest.get('sweep_id', run.root.name)}"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn
