"""The parameters of an answer, checked against what a dataset keeps; errors that name them.

An answer is asked for with parameters (``max_drop``, ``device_type``, ...) that the command line
spells as flags (``--max-drop``) and the HTTP API as query parameters (``max_drop``). A
``ParameterError`` keeps the names apart from its words, so each asker shows them in its own:
``error.worded(as_flag)`` on the command line, ``error.worded(as_query_parameter)`` (also
``str(error)``) in the API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.errors import InputError
from db.models import Dataset, ModelThroughput
from db.queries import complete_model_ids
from search.criteria import LEARNED, MARGIN, MAX_PROBABILITY, PAPER, SIGNALS
from search.selection import centipoints

Wording = Callable[[str], str]  # a parameter's name -> how the asker spells it


def as_query_parameter(name: str) -> str:
    """``device_type``: the HTTP API's query parameter."""
    return name


def as_flag(name: str) -> str:
    """``--device-type``: the command line's option."""
    return "--" + name.replace("_", "-")


class ParameterError(InputError):
    """An InputError about the parameters of a question, which it names.

    ``template`` is ``str.format`` text: each of ``parameters`` appears as ``{name}`` and is
    spelled by the wording; ``values`` fill the other fields (a name or a number the asker gave,
    whose braces are never read as fields).
    """

    def __init__(
        self,
        template: str,
        parameters: tuple[str, ...],
        values: Mapping[str, object] | None = None,
    ) -> None:
        self.template = template
        self.parameters = parameters
        self.values = dict(values or {})
        super().__init__(self.worded(as_query_parameter))

    def worded(self, wording: Wording) -> str:
        """The message with each parameter spelled by ``wording``."""
        return self.template.format(**self.values, **{p: wording(p) for p in self.parameters})


@contextmanager
def parameters_worded(wording: Wording) -> Iterator[None]:
    """Within: a ParameterError becomes an InputError worded for the asker."""
    try:
        yield
    except ParameterError as error:
        raise InputError(error.worded(wording)) from None


def check_max_drop(max_drop: float) -> int:
    """The stored key of an accuracy budget in points (``centipoints``), else ParameterError."""
    if not 0 <= max_drop <= 100:  # also refuses NaN
        raise ParameterError(
            "{max_drop} is an accuracy drop in points from 0 to 100, not {value}",
            ("max_drop",),
            {"value": max_drop},
        )
    if abs(round(max_drop * 100) - max_drop * 100) > 1e-6:
        raise ParameterError(
            "{max_drop} {value} has more than two decimals; use e.g. 0.25",
            ("max_drop",),
            {"value": max_drop},
        )
    return centipoints(max_drop)


def check_confidence(confidence: str) -> str:
    """``confidence`` if it is a confidence signal, else ParameterError."""
    if confidence not in SIGNALS:
        raise ParameterError(
            "{confidence} must be {max!r} (the top-1 probability), {margin!r} (its margin over "
            "the top-2) or {learned!r} (a rule trained on the saver's top-k), not {value!r}",
            ("confidence",),
            {"max": MAX_PROBABILITY, "margin": MARGIN, "learned": LEARNED, "value": confidence},
        )
    return confidence


def check_kept_signal(dataset: Dataset, confidence: str) -> None:
    """InputError unless the dataset keeps pairs on ``confidence``."""
    check_confidence(confidence)
    if confidence not in (dataset.confidence_signals or [MAX_PROBABILITY]):
        raise InputError(
            f"{dataset.name!r} keeps no pairs on {confidence} confidence yet; compute them with "
            f"`saverzoo savers best --dataset {dataset.name} --confidence {confidence}`"
        )


def budget_key(dataset: Dataset, criterion: str, max_drop: float | None) -> tuple[int, bool]:
    """The stored key of a criterion, and whether the dataset already keeps it.

    ``max_drop`` None is no drop (0 points), as ``SaverQuery.checked`` fills it in.
    """
    if criterion == PAPER:
        return 0, True
    cp = check_max_drop(0.0 if max_drop is None else max_drop)
    return cp, cp in dataset.budgets_centipoints


def measured_device_types(session: Session, model_ids: list[int]) -> list[str]:
    """Device types with a throughput measured for at least one of ``model_ids``."""
    if not model_ids:
        return []
    return list(
        session.scalars(
            select(ModelThroughput.device_type)
            .where(ModelThroughput.model_id.in_(model_ids))
            .distinct()
            .order_by(ModelThroughput.device_type)
        )
    )


def check_device_type(session: Session, dataset: Dataset, device_type: str | None) -> str:
    """``device_type`` if the dataset's models have throughput measured on it; else
    ParameterError."""
    measured = measured_device_types(session, complete_model_ids(session, dataset))
    known = (
        f"measured for {dataset.name!r}: {', '.join(repr(d) for d in measured)}"
        if measured
        else f"no model of {dataset.name!r} has a measured throughput yet"
    )
    if device_type is None:
        raise ParameterError(
            "{cost} latency needs {device_type} ({known})",
            ("cost", "device_type"),
            {"known": known},
        )
    if device_type not in measured:
        raise ParameterError(
            "no throughput measured on device type {value!r} ({known})",
            ("device_type",),
            {"value": device_type, "known": known},
        )
    return device_type
