"""The report's zoo plot at a thousand models: the names it draws stay clear of each other."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest

from orchestrator.reports.labels import name_points
from orchestrator.reports.page import render_index
from orchestrator.reports.plots import (
    curve_figure,
    frontier,
    operating_points_figure,
    plot_operating_points,
)

ARCHS = ("vit", "convnext", "efficientnet", "resnet", "regnety", "mobilenetv4", "swin", "xcit")
SIZES = ("tiny", "small", "base", "large", "huge")
TAGS = ("in1k", "augreg_in21k_ft_in1k", "fb_in22k_ft_in1k_384", "laion2b_ft_in12k_in1k", "ra_in1k")


def synthetic_zoo(count: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``count`` models with timm-like names (up to 50 characters) from 0.05 to 60 GMACs, dearer
    ones more accurate, and every third base saved by a cheaper model."""
    rng = np.random.default_rng(seed)
    names = [
        f"{arch}_{size}_patch{patch}_{224 + 32 * res}.{tag}"
        for arch, size, patch, res, tag in itertools.product(
            ARCHS, SIZES, (8, 14, 16), range(3), TAGS
        )
    ]
    chosen = rng.choice(names, count, replace=False)
    gmacs = np.sort(np.exp(rng.uniform(np.log(0.05), np.log(60.0), count)))
    accuracy = 1 / (1 + np.exp(-(0.6 * np.log(gmacs) + rng.normal(0, 0.3, count))))
    models = [
        {"name": str(n), "gmacs": float(g), "accuracy": float(a)}
        for n, g, a in zip(chosen, gmacs, accuracy, strict=True)
    ]
    savers = [
        {
            "base": m["name"],
            "saver": models[0]["name"] if i % 3 == 1 else None,
            "relative_cost": float(rng.uniform(0.3, 0.95)),
            "accuracy": m["accuracy"] - 0.002,
        }
        for i, m in enumerate(models)
    ]
    return models, savers


def drawn_boxes(fig, names) -> np.ndarray:
    """Each name's box as drawn (its white backing, which holds its text), (x0, y0, x1, y1)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for name in names:
        text, backing = name.get_window_extent(renderer), name.get_bbox_patch().get_window_extent()
        assert backing.x0 <= text.x0 and text.x1 <= backing.x1
    return np.array([name.get_bbox_patch().get_window_extent().extents for name in names])


def meeting_pairs(boxes: np.ndarray) -> list[tuple[int, int]]:
    return [
        (i, j)
        for i, j in itertools.combinations(range(len(boxes)), 2)
        if boxes[i, 0] < boxes[j, 2]
        and boxes[j, 0] < boxes[i, 2]
        and boxes[i, 1] < boxes[j, 3]
        and boxes[j, 1] < boxes[i, 3]
    ]


def test_at_a_thousand_models_no_two_names_meet_and_none_leaves_the_axes():
    models, savers = synthetic_zoo(1000)

    fig, names = operating_points_figure(models, savers)

    boxes = drawn_boxes(fig, names)
    ax = fig.axes[0]
    frame, legend = ax.bbox, ax.get_legend().get_window_extent()
    try:
        assert 20 <= len(names) < 200  # the room a plot has, not every model
        assert meeting_pairs(boxes) == []
        assert np.all(boxes[:, :2] >= [frame.x0, frame.y0])
        assert np.all(boxes[:, 2:] <= [frame.x1, frame.y1])
        assert meeting_pairs(np.vstack([boxes, legend.extents])) == []
        # No name hides the dot of another named model.
        dots = ax.transData.transform([name.xy for name in names])
        for i, (x, y) in enumerate(dots):
            inside = (
                (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
            )
            assert not np.any(np.delete(inside, i)), names[i].get_text()
        # The frontier comes first: the cheapest model, always on it, is named.
        assert frontier(models)[0]["name"] in {name.get_text() for name in names}
    finally:
        plt.close(fig)


def test_names_that_find_no_free_place_are_left_out():
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    crowd = [(f"model_{i}", 0.5, 0.5) for i in range(30)]  # thirty dots on one spot

    names = name_points(ax, crowd, fontsize=7)

    assert [name.get_text() for name in names] == ["model_0"]
    assert len(ax.texts) == 1  # the others' trial names are gone, not hidden
    plt.close(fig)


def test_a_small_zoo_names_every_model_where_its_name_fits():
    models, savers = synthetic_zoo(8, seed=1)

    fig, names = operating_points_figure(models, savers)

    assert sorted(name.get_text() for name in names) == sorted(m["name"] for m in models)
    assert meeting_pairs(drawn_boxes(fig, names)) == []
    plt.close(fig)


def test_the_frontier_is_every_model_more_accurate_than_all_cheaper_ones():
    models = [
        {"name": "a", "gmacs": 1.0, "accuracy": 0.5},
        {"name": "b", "gmacs": 2.0, "accuracy": 0.4},  # dearer and worse than a
        {"name": "c", "gmacs": 2.0, "accuracy": 0.6},
        {"name": "d", "gmacs": 3.0, "accuracy": 0.6},  # only as good as the cheaper c
        {"name": "e", "gmacs": 4.0, "accuracy": 0.7},
    ]

    assert [m["name"] for m in frontier(models)] == ["a", "c", "e"]


@pytest.mark.parametrize(
    ("named", "caption"),
    [
        (48, "The plot names 48 of 1000 models: the frontier first"),
        (1000, "The plot names every model."),
    ],
)
def test_the_page_says_how_many_models_the_plot_names_and_where_to_see_all(named, caption):
    models, _ = synthetic_zoo(1000)
    meta = {
        "dataset": "val",
        "query": {"criterion": "budget", "max_drop": 0.0, "holdout": False},
        "generated_at": "2026-12-06T12:00:00+00:00",
        "search_revision": 1,
    }
    rows = [{"base": m["name"], "saver": None} for m in models]

    page = " ".join(render_index(meta, rows, models, {}, named).split())

    assert caption in page
    assert ('<a href="#savers">The table</a>' in page) is (named < len(models))


def test_a_curve_of_two_long_names_keeps_its_texts_apart():
    long_saver, long_base = (
        "vit_so400m_patch14_siglip_gap_896.pali2_3b_pt",
        "eva02_large_patch14_clip_336.merged2b_ft_inat21",
    )
    front = [{"relative_cost": 0.1 + i / 30, "accuracy": 0.6 + i / 100} for i in range(30)]
    result = {
        "pareto_front": front,
        "saver": long_saver,
        "base": long_base,
        "base_accuracy": 0.85,
        "dataset": "val",
    }

    fig = curve_figure(result, {"relative_cost": 0.5, "accuracy": 0.72, "threshold": 0.61})

    fig.canvas.draw()
    ax = fig.axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    ticks = [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1] + [
        t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1
    ]  # those drawn
    texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ticks]
    boxes = np.array([t.get_window_extent().extents for t in texts])
    legend = ax.get_legend().get_window_extent()
    assert meeting_pairs(np.vstack([boxes, legend.extents])) == []
    assert ax.bbox.x0 <= legend.x0 and legend.x1 <= ax.bbox.x1
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= [fig.bbox.x1, fig.bbox.y1])
    assert long_saver in ax.get_title() and long_base in ax.get_title()
    plt.close(fig)


def test_a_zoo_of_no_models_draws_an_empty_plot_naming_none(tmp_path):
    assert plot_operating_points([], [], tmp_path / "zoo.png") == 0
    assert (tmp_path / "zoo.png").stat().st_size > 0
