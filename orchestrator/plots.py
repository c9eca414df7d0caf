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


def plot_zoo(models: list[dict], curves: list[dict], path: Path) -> Path:
    """Every model's cost (GMACs) against its accuracy, and for each base with a saver the
    cost and accuracy of the cascade along the pair's Pareto front."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    gmacs = {m["name"]: m["gmacs"] for m in models}
    for result in curves:
        base_cost = gmacs[result["base"]]
        front = result["pareto_front"]
        ax.plot(
            [p["relative_cost"] * base_cost for p in front],
            [100 * p["accuracy"] for p in front],
            lw=1,
            alpha=0.7,
            label=f"{result['saver']} saving {result['base']}",
        )
    ax.scatter(
        [m["gmacs"] for m in models], [100 * m["accuracy"] for m in models], color="black", zorder=3
    )
    for m in models:
        ax.annotate(m["name"], (m["gmacs"], 100 * m["accuracy"]), fontsize=7,
                    xytext=(4, -8), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("cost per image (GMACs, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("The zoo (dots) and each base with its best saver (lines)")
    if curves:
        ax.legend(loc="best", fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
