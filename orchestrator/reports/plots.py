"""PNG plots of search results (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render to files only
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from orchestrator.reports.labels import name_points

# In a zoo this small every model's name is worth its room; in a larger one an arbitrary model's
# name tells the reader nothing the table does not.
EVERY_NAME = 40


def _save(fig, path: Path) -> Path:
    """Write the figure as laid out: names are placed in pixels, so no layout runs here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)  # a report draws a thousand figures: free each one
    return path


def frontier(models: list[dict]) -> list[dict]:
    """The models no cheaper (or equally cheap) model matches in accuracy, cheapest first."""
    best, kept = -1.0, []
    for m in sorted(models, key=lambda m: (m["gmacs"], -m["accuracy"], m["name"])):
        if m["accuracy"] > best:
            best = m["accuracy"]
            kept.append(m)
    return kept


def _point(m: dict) -> tuple[str, float, float]:
    return m["name"], m["gmacs"], 100 * m["accuracy"]


def plot_curve(result: dict, path: Path, chosen: dict | None = None) -> Path:
    """Draw ``curve_figure`` into ``path``."""
    return _save(curve_figure(result, chosen), path)


def curve_figure(result: dict, chosen: dict | None = None) -> Figure:
    """Accuracy against relative cost along a pair's Pareto front; ``chosen``: the operating
    point a criterion picked (relative_cost, accuracy), marked."""
    front = result["pareto_front"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if chosen is not None:
        ax.scatter(
            [chosen["relative_cost"]],
            [100 * chosen["accuracy"]],
            color="tab:red",
            zorder=3,
            label=f"chosen: threshold {chosen['threshold']:.4g}",
        )
    ax.plot(
        [p["relative_cost"] for p in front],
        [100 * p["accuracy"] for p in front],
        marker=".",
        label=f"Pareto front on {result['dataset']}",
    )
    ax.axhline(100 * result["base_accuracy"], color="grey", ls="--", lw=0.8, label="base alone")
    ax.set_xlabel("relative cost (base alone = 1)")
    ax.set_ylabel("accuracy (%)")
    # The pair on two lines of the title: in the legend two long timm names reached over the
    # axis's tick labels.
    ax.set_title(f"{result['saver']}\n→ {result['base']}", fontsize=9)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _cascade_line(ax, result: dict, base_cost: float, color, **style) -> None:
    front = result["pareto_front"]
    ax.plot(
        [p["relative_cost"] * base_cost for p in front],
        [100 * p["accuracy"] for p in front],
        color=color,
        zorder=4,
        **style,
    )


def plot_zoo(models: list[dict], curves: list[dict], path: Path) -> Path:
    """Every model's cost (GMACs) against its accuracy, and for each base with a saver the
    cost and accuracy of the cascade along the pair's Pareto front.

    Cascades of similar models sit on top of each other and of the dots, so below the zoo each
    cascade also gets a panel of its own, zoomed on its saver, its base and its curve.
    """
    columns = min(len(curves), 4) or 1
    rows = -(-len(curves) // columns)
    fig = plt.figure(figsize=(8, 4.5 + 2.6 * rows), dpi=120)
    grid = fig.add_gridspec(1 + rows, columns, height_ratios=[4.5] + [2.6] * rows)
    ax = fig.add_subplot(grid[0, :])
    gmacs = {m["name"]: m["gmacs"] for m in models}
    accuracy = {m["name"]: m["accuracy"] for m in models}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, result in enumerate(curves):
        _cascade_line(
            ax,
            result,
            gmacs[result["base"]],
            colors[index % len(colors)],
            lw=1.6,
            label=f"{result['saver']} saving {result['base']}",
        )
    ax.scatter(
        list(gmacs.values()),
        [100 * a for a in accuracy.values()],
        s=30,
        facecolors="white",
        edgecolors="black",
        zorder=3,
        label="models alone",
    )
    ax.set_xscale("log")
    ax.set_xlabel("cost per image (GMACs, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("The zoo (dots) and each base with its best saver (lines)")
    if curves:
        ax.legend(loc="lower right", fontsize=6)
    for index, result in enumerate(curves):
        panel = fig.add_subplot(grid[1 + index // columns, index % columns])
        color = colors[index % len(colors)]
        # Relative cost on a linear axis: the base alone at 1, the saver alone at its cost ratio.
        front = result["pareto_front"]
        panel.plot(
            [p["relative_cost"] for p in front],
            [100 * p["accuracy"] for p in front],
            color=color,
            lw=1.4,
            marker="o",
            ms=3,
            zorder=4,
        )
        ratio = gmacs[result["saver"]] / gmacs[result["base"]]
        ends = [100 * accuracy[result["saver"]], 100 * accuracy[result["base"]]]
        panel.scatter([ratio, 1.0], ends, s=24, facecolors="white", edgecolors="black", zorder=3)
        panel.axhline(100 * result["base_accuracy"], color="grey", ls="--", lw=0.7)
        panel.set_xlim(0, 1.08)
        panel.set_xlabel("relative cost", fontsize=6)
        panel.set_title(f"{result['saver']}\n→ {result['base']}", fontsize=6, color=color)
        panel.tick_params(labelsize=6)
    fig.tight_layout()  # names are placed in pixels: after the layout has moved the axes
    in_curves = [name for result in curves for name in (result["base"], result["saver"])]
    dots = [(m["gmacs"], 100 * m["accuracy"]) for m in models]
    name_points(
        ax, _candidates(models, in_curves), fontsize=7, obstacles=_legend_box(ax), dots=dots
    )
    return _save(fig, path)


def plot_operating_points(models: list[dict], savers: list[dict], path: Path) -> int:
    """Draw ``operating_points_figure`` into ``path``; the number of models it names."""
    fig, names = operating_points_figure(models, savers)
    _save(fig, path)
    return len(names)


def operating_points_figure(models: list[dict], savers: list[dict]) -> tuple[Figure, list]:
    """Every model's cost (GMACs) against its accuracy (dots), the frontier of single models, and
    each base joined by an arrow to its cascade's operating point with its best saver (cost and
    accuracy of saver-then-base); the figure and the names drawn on it.

    Names go to the frontier first, then to the bases whose saver saves most, where they fit.
    """
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=120)
    ax.set_xscale("log")
    gmacs = {m["name"]: m["gmacs"] for m in models}
    accuracy = {m["name"]: m["accuracy"] for m in models}
    ax.scatter(
        list(gmacs.values()),
        [100 * a for a in accuracy.values()],
        s=14,
        color="black",
        zorder=3,
        label="models alone",
    )
    best = frontier(models)
    ax.step(
        [m["gmacs"] for m in best],
        [100 * m["accuracy"] for m in best],
        where="post",
        color="grey",
        lw=0.8,
        zorder=2,
        label="frontier: the most accurate model at its cost",
    )
    with_saver = sorted(
        (row for row in savers if row["saver"] is not None), key=lambda row: row["relative_cost"]
    )
    # A dense zoo's arrows would hide its dots: beyond a hundred each is drawn faint.
    arrow = {"arrowstyle": "->", "color": "tab:blue", "lw": 0.8}
    if len(with_saver) > 100:
        arrow |= {"lw": 0.5, "alpha": 0.4}
    for row in with_saver:
        base = row["base"]
        start = (gmacs[base], 100 * accuracy[base])
        end = (row["relative_cost"] * gmacs[base], 100 * row["accuracy"])
        ax.annotate("", end, start, arrowprops=arrow)
    ax.scatter(
        [row["relative_cost"] * gmacs[row["base"]] for row in with_saver],
        [100 * row["accuracy"] for row in with_saver],
        s=14,
        color="tab:blue",
        zorder=3,
        label="base with its best saver",
    )
    ax.set_xlabel("cost per image (GMACs, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(
        f"{len(with_saver)} of {len(savers)} bases saved: each arrow goes from a base "
        "to its cascade",
        fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()  # names are placed in pixels: after the layout has moved the axes
    saved = [row["base"] for row in with_saver]
    dots = [(m["gmacs"], 100 * m["accuracy"]) for m in models] + [
        (row["relative_cost"] * gmacs[row["base"]], 100 * row["accuracy"]) for row in with_saver
    ]
    names = name_points(
        ax, _candidates(models, saved), fontsize=7, obstacles=_legend_box(ax), dots=dots
    )
    return fig, names


def _candidates(models: list[dict], wanted: list[str]) -> list[tuple[str, float, float]]:
    """Whom a plot names, most needed first: the frontier, then ``wanted``, then in a zoo of at
    most ``EVERY_NAME`` models every other model too."""
    by_name = {m["name"]: m for m in models}
    order = [m["name"] for m in frontier(models)] + wanted
    if len(models) <= EVERY_NAME:
        order += [m["name"] for m in models]
    return [_point(by_name[name]) for name in dict.fromkeys(order)]


def _legend_box(ax) -> list:
    legend = ax.get_legend()
    return [] if legend is None else [legend.get_window_extent()]
