"""Costs other than GMACs: stored pair results re-costed with measured latency.

The search stores pairs costed in GMACs. For a fixed (base, saver, criterion, budget) the operating
point a criterion picks does not depend on the costs: under a budget the saving
``r - cost_s / cost_b`` grows with the exit ratio r whatever the cost ratio, so the feasible point
with the most exits wins either way; the paper criterion's match depends on accuracies alone. So a
stored pair can be re-costed with another cost ratio without touching its predictions:
``relative_cost = ratio + (1 - exit_ratio)`` and ``saving = 1 - relative_cost``, i.e.
``saving_new = saving_old + ratio_old - ratio_new``.

Latency per image on a device type is ``1 / images_per_s`` measured there (``ModelThroughput``).
"""

from __future__ import annotations

from collections.abc import Mapping

GMACS = "gmacs"
LATENCY = "latency"
COSTS = (GMACS, LATENCY)
#: The pair-result columns that depend on the cost ratio (the rest are counts and thresholds).
COST_COLUMNS = ("relative_cost", "saving", "holdout_calibration_saving", "holdout_saving")


def latency_per_image(images_per_s: float) -> float:
    """Seconds per image from a measured throughput."""
    if not images_per_s > 0:  # also refuses NaN
        raise ValueError(f"a throughput must be positive, not {images_per_s} images/s")
    return 1.0 / images_per_s


def stored_cost_ratio(relative_cost: float, exit_ratio: float) -> float:
    """The ``cost_s / cost_b`` a pair result was computed with."""
    return relative_cost - (1.0 - exit_ratio)


def recost_saving(saving: float, from_ratio: float, to_ratio: float) -> float:
    """A saving computed with cost ratio ``from_ratio``, had the ratio been ``to_ratio``."""
    return saving + from_ratio - to_ratio


def recost_pair(pair: Mapping[str, float], cost_ratio: float) -> dict[str, float]:
    """The ``COST_COLUMNS`` of a stored pair result under another ``cost_s / cost_b``.

    In-sample and held-out savings are recomputed from their exit ratios, exactly as the engine
    computes them; the calibration half's exit ratio is not stored, so its saving is shifted by the
    difference of the ratios (the one the row was computed with, read from the row itself).
    """
    relative_cost = cost_ratio + (1.0 - pair["exit_ratio"])
    from_ratio = stored_cost_ratio(pair["relative_cost"], pair["exit_ratio"])
    return {
        "relative_cost": relative_cost,
        "saving": 1.0 - relative_cost,
        "holdout_calibration_saving": recost_saving(
            pair["holdout_calibration_saving"], from_ratio, cost_ratio
        ),
        "holdout_saving": 1.0 - (cost_ratio + (1.0 - pair["holdout_exit_ratio"])),
    }
