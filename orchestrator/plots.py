"""PNG plots of search results (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render to files only
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)  # a report draws a thousand figures: free each one
    return path


def _models(ax, models: list[dict], *, names: bool, fontsize: int) -> None:
    """Every model alone: a dot at (GMACs, accuracy) on a log cost axis, named if asked."""
    ax.scatter([m["gmacs"] for m in models], [100 * m["accuracy"] for m in models], s=14,
               color="black", zorder=3, label="models alone")  # fmt: skip
    if names:
        for m in models:
            ax.annotate(m["name"], (m["gmacs"], 100 * m["accuracy"]), fontsize=fontsize,
                        xytext=(4, -8), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("cost per image (GMACs, log scale)")


def plot_curve(result: dict, path: Path, chosen: dict | None = None) -> Path:
    """Accuracy against relative cost along a pair's Pareto front; ``chosen``: the operating
    point a criterion picked (relative_cost, accuracy), marked."""
    front = result["pareto_front"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if chosen is not None:
        ax.scatter(
            [chosen["relative_cost"]], [100 * chosen["accuracy"]], color="tab:red", zorder=3,
            label=f"chosen: threshold {chosen['threshold']:.4g}",
        )  # fmt: skip
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
    return _save(fig, path)


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
    _models(ax, models, names=True, fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("The zoo (dots) and each base with its best saver (lines)")
    if curves:
        ax.legend(loc="best", fontsize=6)
    return _save(fig, path)


def plot_operating_points(models: list[dict], savers: list[dict], path: Path) -> Path:
    """Every model's cost (GMACs) against its accuracy (dots), each base joined by an arrow to
    its cascade's operating point with its best saver (cost and accuracy of saver-then-base)."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    gmacs = {m["name"]: m["gmacs"] for m in models}
    accuracy = {m["name"]: m["accuracy"] for m in models}
    _models(ax, models, names=len(models) <= 40, fontsize=6)  # beyond 40, names only clutter
    with_saver = [row for row in savers if row["saver"] is not None]
    for row in with_saver:
        base = row["base"]
        start = (gmacs[base], 100 * accuracy[base])
        end = (row["relative_cost"] * gmacs[base], 100 * row["accuracy"])
        ax.annotate("", end, start, arrowprops={"arrowstyle": "->", "color": "tab:blue", "lw": 0.8})
    ax.scatter([row["relative_cost"] * gmacs[row["base"]] for row in with_saver],
               [100 * row["accuracy"] for row in with_saver], s=14, color="tab:blue", zorder=3,
               label="base with its best saver")  # fmt: skip
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{len(with_saver)} of {len(savers)} bases saved: each arrow goes from a base "
                 "to its cascade", fontsize=9)  # fmt: skip
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)
