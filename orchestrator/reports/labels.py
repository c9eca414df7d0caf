"""Names beside a plot's dots, none covering another.

A plot of a thousand models has room for a few dozen names. Candidates come in the caller's order
of importance; each takes, of eight places around its dot, one where its rendered box lies inside
the axes, clear of the names already placed, of their dots and of the given obstacles (the
legend), and covers the fewest of the plot's other dots (a frontier model's name goes to the empty
side). A name with no such place is left out, and the caller says how many were.

Places are found in pixels, so the figure's layout must be final before ``name_points`` runs and
must not change after it (save without ``tight_layout`` or ``bbox_inches="tight"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox

GAP = 4.0  # points from a dot's centre to its name's box (a named dot keeps this much free)
MARGIN = 1.0  # points kept free around every name; its white backing fills exactly this
# Where a name may go around its dot, as (dx, dy): right, left, above and below first (a name read
# along its dot's row or column), then the four corners.
PLACES = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (1, 1), (-1, -1), (-1, 1))


def name_points(
    ax: Axes,
    points: Sequence[tuple[str, float, float]],
    fontsize: float,
    obstacles: Sequence[Bbox] = (),
    dots: Sequence[tuple[float, float]] = (),
) -> list[Annotation]:
    """Name each ``(name, x, y)`` (data coordinates) where its name fits, in the given order; the
    names drawn. Later candidates lose to earlier ones, so put the ones a reader needs first.
    ``dots``: every dot drawn (data coordinates), which names cover as few of as they can."""
    pixels = ax.figure.dpi / 72
    gap, margin = GAP * pixels, MARGIN * pixels
    frame = ax.bbox
    drawn = ax.transData.transform(np.reshape(dots, (-1, 2)))
    taken = [_box(b.x0, b.y0, b.x1, b.y1) for b in obstacles]  # (x0, y0, x1, y1), in pixels
    named: list[Annotation] = []
    centres = ax.transData.transform(np.reshape([(x, y) for _, x, y in points], (-1, 2)))
    for (name, x, y), (px, py) in zip(points, centres, strict=True):
        dot = _box(px - gap, py - gap, px + gap, py + gap)
        if not frame.contains(px, py) or _hits(dot, taken):
            continue  # outside the axes, or under a name already placed
        label = ax.annotate(
            name,
            (x, y),
            xytext=(0, 0),
            textcoords="offset points",
            fontsize=fontsize,
            ha="left",
            va="bottom",
            zorder=6,
            bbox={"boxstyle": f"square,pad={MARGIN / fontsize}", "fc": "white", "ec": "none"},
        )
        text = label.get_window_extent()
        place = _place(text, px, py, gap, margin, frame, taken, drawn)
        if place is None:
            label.remove()
            continue
        left, bottom = place
        label.xyann = ((left - text.x0) / pixels, (bottom - text.y0) / pixels)
        taken += [dot, _around(left, bottom, text.width, text.height, margin)]
        named.append(label)
    return named


def _place(text: Bbox, px, py, gap, margin, frame, taken, drawn) -> tuple[float, float] | None:
    """The lower-left corner (pixels) of the free place for a box the size of ``text`` that
    covers the fewest ``drawn`` dots (the first such in ``PLACES``), or None."""
    width, height = text.width, text.height
    best, fewest = None, len(drawn) + 1
    for dx, dy in PLACES:
        left = px + gap if dx > 0 else px - gap - width if dx < 0 else px - width / 2
        bottom = py + gap if dy > 0 else py - gap - height if dy < 0 else py - height / 2
        box = _around(left, bottom, width, height, margin)
        if _within(box, frame) and not _hits(box, taken):
            covered = int(
                np.count_nonzero(
                    (box[0] <= drawn[:, 0])
                    & (drawn[:, 0] <= box[2])
                    & (box[1] <= drawn[:, 1])
                    & (drawn[:, 1] <= box[3])
                )
            )
            if covered < fewest:
                best, fewest = (left, bottom), covered
            if fewest == 0:
                break
    return best


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([x0, y0, x1, y1])


def _around(left: float, bottom: float, width: float, height: float, margin: float) -> np.ndarray:
    """A name's box and the margin kept free around it."""
    return _box(left - margin, bottom - margin, left + width + margin, bottom + height + margin)


def _within(box: np.ndarray, frame: Bbox) -> bool:
    return bool(
        frame.x0 <= box[0] and frame.y0 <= box[1] and box[2] <= frame.x1 and box[3] <= frame.y1
    )


def _hits(box: np.ndarray, taken: list[np.ndarray]) -> bool:
    """Whether ``box`` meets any of ``taken`` (touching edges do not count)."""
    if not taken:
        return False
    others = np.asarray(taken)
    return bool(
        np.any(
            (box[0] < others[:, 2])
            & (others[:, 0] < box[2])
            & (box[1] < others[:, 3])
            & (others[:, 1] < box[3])
        )
    )
