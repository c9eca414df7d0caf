"""PNG plots of search results (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render to files only
import matplotlib.pyplot as plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)  # a report draws a thousand figures: free each one
    return path


def _models(ax, models: list[dict], *, names: bool, fontsize: int) -> None:
    """Every model alone: a dot at (GMACs, accuracy) on a log cost axis, named if asked."""
    ax.scatter(
        [m["gmacs"] for m in models],
        [100 * m["accuracy"] for m in models],
        s=14,
        color="black",
        zorder=3,
        label="models alone",
    )
    if names:
        for m in models:
            ax.annotate(
                m["name"],
                (m["gmacs"], 100 * m["accuracy"]),
                fontsize=fontsize,
                xytext=(4, -8),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_xlabel("cost per image (GMACs, log scale)")


def plot_curve(result: dict, path: Path, chosen: dict | None = None) -> Path:
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
        label=f"{result['saver']} → {result['base']}",
    )
    ax.axhline(100 * result["base_accuracy"], color="grey", ls="--", lw=0.8, label="base alone")
    ax.set_xlabel("relative cost (base alone = 1)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Pareto front on {result['dataset']}")
    ax.legend(loc="lower right")
    return _save(fig, path)


def _label_without_overlap(ax, models: list[dict], fontsize: int) -> None:
    """Name every dot, trying four places around it so no two names cover each other."""
    pixels_per_point = ax.figure.dpi / 72
    dot = 4 * pixels_per_point
    placed: list[tuple[float, float, float, float]] = [  # boxes in pixels: the dots, then names
        (x - dot, y - dot, 2 * dot, 2 * dot)
        for x, y in ax.transData.transform([(m["gmacs"], 100 * m["accuracy"]) for m in models])
    ]
    offsets = ((5, -11, "left"), (5, 5, "left"), (-5, -11, "right"), (-5, 5, "right"))
    for m in sorted(models, key=lambda m: m["gmacs"]):
        x, y = ax.transData.transform((m["gmacs"], 100 * m["accuracy"]))
        width = 0.6 * fontsize * len(m["name"]) * pixels_per_point
        height = 1.2 * fontsize * pixels_per_point
        for dx, dy, align in offsets:
            left = x + dx * pixels_per_point - (width if align == "right" else 0)
            box = (left, y + dy * pixels_per_point, width, height)
            if not any(_overlap(box, other) for other in placed):
                break
        placed.append(box)
        ax.annotate(
            m["name"],
            (m["gmacs"], 100 * m["accuracy"]),
            fontsize=fontsize,
            xytext=(dx, dy),
            textcoords="offset points",
            ha=align,
        )


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


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
    _label_without_overlap(ax, models, fontsize=7)
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
    ax.scatter(
        [row["relative_cost"] * gmacs[row["base"]] for row in with_saver],
        [100 * row["accuracy"] for row in with_saver],
        s=14,
        color="tab:blue",
        zorder=3,
        label="base with its best saver",
    )
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(
        f"{len(with_saver)} of {len(savers)} bases saved: each arrow goes from a base "
        "to its cascade",
        fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)
