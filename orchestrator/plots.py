"""PNG plots of search results (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render to files only
import matplotlib.pyplot as plt  # noqa: E402


def plot_curve(result: dict, path: Path) -> Path:
    """Accuracy against relative cost along a pair's Pareto front."""
    front = result["pareto_front"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(
        [p["relative_cost"] for p in front],
        [100 * p["accuracy"] for p in front],
        marker=".",
        label=f"{result['saver']} → {result['base']}",
    )
    ax.axhline(100 * result["base_accuracy"], color="grey", ls="--", lw=0.8, label="base alone")
    ax.set_xlabel("relative cost (base alone = 1)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Pareto front on {result['dataset']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
