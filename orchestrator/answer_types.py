"""The types of every answer saverzoo gives: the CLI's ``--json``, the HTTP API (each route's
``response_model``, so ``/openapi.json`` describes every field) and the report.

Field names are the JSON keys; ``orchestrator.answers.FIELDS`` says how the CLI and the report show
them. Fractions are fractions (0.81, not 81%). Every model refuses unknown fields, so the five
kinds of saver row are told apart by their fields alone.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----- the fields of a cascade -------------------------------------------------------------------
Threshold = Annotated[
    float | None,
    Field(description="The saver answers a sample iff its confidence is above this threshold."),
]
ExitRatio = Annotated[
    float | None,
    Field(description="Fraction of the samples the saver answers."),
]
Accuracy = Annotated[
    float | None,
    Field(description="Top-1 accuracy of the cascade (a fraction)."),
]
BaseAccuracy = Annotated[
    float | None,
    Field(description="Top-1 accuracy of the base model alone (a fraction)."),
]
RelativeCost = Annotated[
    float | None,
    Field(
        description="The cascade's cost over the base's: saver cost / base cost + (1 - exit ratio)."
    ),
]
Saving = Annotated[
    float | None,
    Field(description="1 - relative cost: the fraction of the base's cost saved."),
]
FrontierModel = Annotated[
    str | None,
    Field(
        description="The cheapest single model at least as accurate as the cascade (or the "
        "base alone); null where no model has a stored score."
    ),
]
FrontierSaving = Annotated[
    float | None,
    Field(
        description="The cascade's saving against the frontier model: negative where that "
        "single model beats the cascade."
    ),
]
InSampleAccuracy = Annotated[
    float | None,
    Field(description="Accuracy on the samples the threshold was picked on (calibration half)."),
]
InSampleSaving = Annotated[
    float | None,
    Field(description="Saving on the samples the threshold was picked on."),
]
Interval = Annotated[
    list[float] | None,
    Field(description="95% interval [low, high] on the evaluation half; null without scores."),
]
SaverName = Annotated[
    str | None,
    Field(description="The best saver; null where no saver meets the criterion."),
]
BaseName = Annotated[
    str,
    Field(description="The base model."),
]


class BaseAndSaver(Answer):
    base: BaseName
    saver: SaverName


class BudgetFields(Answer):
    threshold: Threshold
    exit_ratio: ExitRatio
    accuracy: Accuracy
    base_accuracy: BaseAccuracy
    relative_cost: RelativeCost
    saving: Saving
    frontier_model: FrontierModel
    frontier_saving: FrontierSaving


class PaperFields(Answer):
    threshold: Threshold
    exit_ratio: ExitRatio
    delta_c: float | None = Field(
        description="The paper's ΔC at its equal-performance threshold: saver cost / base cost "
        "- exit ratio."
    )
    frontier_model: FrontierModel
    frontier_saving: FrontierSaving


class HoldoutFields(Answer):
    threshold: float | None = Field(
        description="The threshold picked on the calibration half of the samples."
    )
    in_sample_accuracy: InSampleAccuracy
    in_sample_saving: InSampleSaving
    exit_ratio: float | None = Field(
        description="Fraction of the evaluation half the saver answers."
    )
    accuracy: float | None = Field(
        description="Top-1 accuracy of the cascade on the evaluation half."
    )
    accuracy_ci: Interval
    base_accuracy: float | None = Field(
        description="Top-1 accuracy of the base alone on the evaluation half."
    )
    relative_cost: RelativeCost
    saving: float | None = Field(description="Saving on the evaluation half.")
    saving_ci: Interval
    frontier_model: FrontierModel
    frontier_saving: FrontierSaving


class TransferFields(Answer):
    threshold: float | None = Field(description="The threshold picked on the dataset asked about.")
    in_sample_accuracy: float | None = Field(
        description="The cascade's accuracy on the dataset it was picked on."
    )
    in_sample_saving: float | None = Field(
        description="The cascade's saving on the dataset it was picked on."
    )
    exit_ratio: float | None = Field(
        description="Fraction of the other dataset's samples the saver answers."
    )
    accuracy: float | None = Field(
        description="Top-1 accuracy of the cascade on the other dataset."
    )
    base_accuracy: float | None = Field(
        description="Top-1 accuracy of the base alone on the other dataset."
    )
    relative_cost: RelativeCost
    saving: float | None = Field(description="Saving on the other dataset.")
    frontier_model: FrontierModel
    frontier_saving: FrontierSaving


# A row of `savers best` / GET /v1/savers: one per base, the kind the query asks for.
class BudgetRow(BudgetFields, BaseAndSaver):
    """A base's best saver under an accuracy budget, in GMACs or in latency."""


class PaperRow(PaperFields, BaseAndSaver):
    """A base's best saver under the paper's equal-performance criterion."""


class HoldoutRow(HoldoutFields, BaseAndSaver):
    """A base's best saver with its threshold picked on one half, scored on the other."""


class TransferRow(TransferFields, BaseAndSaver):
    """A base's best saver picked on one dataset, scored on another (``score_on``)."""


class ChainRow(Answer):
    """A base's best cascade of up to three models (``stages`` 3)."""

    base: BaseName
    chain: list[str] = Field(
        description="The savers before the base, cheapest first; empty where none saves it."
    )
    thresholds: list[float] | None = Field(description="Each saver's threshold, in chain order.")
    exit_ratios: list[float] | None = Field(
        description="Fraction of the samples each saver answers, in chain order."
    )
    accuracy: Accuracy
    base_accuracy: BaseAccuracy
    relative_cost: RelativeCost
    saving: Saving
    frontier_model: FrontierModel
    frontier_saving: FrontierSaving


SaverRow = BudgetRow | PaperRow | HoldoutRow | TransferRow | ChainRow


# ----- one base's savers (`savers show`, GET /v1/savers/{base}) ----------------------------------
class SaverAndCost(Answer):
    saver: str = Field(description="The saver.")
    saver_gmacs: float = Field(description="The saver's cost in GMACs.")


class BudgetSaver(BudgetFields, SaverAndCost):
    """A candidate saver under an accuracy budget."""


class PaperSaver(PaperFields, SaverAndCost):
    """A candidate saver under the paper's criterion."""


class HoldoutSaver(HoldoutFields, SaverAndCost):
    """A candidate saver with its threshold picked on the calibration half."""


RankedSaver = BudgetSaver | PaperSaver | HoldoutSaver


class SaversOfBase(Answer):
    """One base's best saver and the next-best ones, ranked the same way."""

    dataset: str = Field(description="The dataset.")
    base: BaseName
    base_gmacs: float = Field(description="The base's cost in GMACs.")
    criterion: str = Field(description="budget or paper.")
    max_drop: float | None = Field(
        description="The accuracy budget in points; null under the paper's criterion."
    )
    holdout: bool = Field(
        description="Thresholds picked on the calibration half, scored on the other."
    )
    cost: str = Field(description="What a model costs: gmacs.")
    device_type: str | None = Field(description="Always null here (GMACs).")
    score_on: str | None = Field(description="Always null here.")
    stages: int = Field(description="Always 2: pairs.")
    confidence: str = Field(
        description=(
            "What a sample exits on: max (top-1 probability), margin (top-1 minus top-2) or "
            "learned (a rule trained on the saver's top-k, scored out of fold)."
        )
    )
    candidates: int = Field(description="How many cheaper models have a stored pair with the base.")
    fields: list[str] = Field(description="The reported fields of each saver, in order.")
    best: RankedSaver | None = Field(
        description="The best saver; null where none meets the criterion."
    )
    alternatives: list[RankedSaver] = Field(description="The next-best savers, best first.")


# ----- a pair's curve (`savers curve`, GET /v1/pairs/{base}/{saver}/curve) ----------------------
class CurvePoint(Answer):
    threshold: float = Field(description="The saver answers iff its confidence is above it.")
    exit_ratio: float = Field(description="Fraction of the samples the saver answers.")
    accuracy: float = Field(description="Top-1 accuracy of the cascade.")
    relative_cost: float = Field(description="The cascade's cost over the base's.")
    saving: float = Field(description="1 - relative cost.")


class PairCurve(Answer):
    """Every distinct exit set of a saver before a base, and its Pareto front."""

    base: BaseName
    saver: str = Field(description="The saver.")
    dataset: str = Field(description="The dataset.")
    base_accuracy: float = Field(description="Top-1 accuracy of the base alone.")
    saver_accuracy: float = Field(description="Top-1 accuracy of the saver alone.")
    cost_ratio: float = Field(description="The saver's cost over the base's.")
    pareto_front: list[CurvePoint] = Field(
        description="The exit sets no other beats in both cost and accuracy, cheapest first."
    )
    num_exit_sets: int = Field(description="How many distinct exit sets the pair has.")
    confidence: str = Field(description="What a sample exits on: max, margin or learned.")


# ----- datasets and models -----------------------------------------------------------------------
class DatasetSummary(Answer):
    """A registered dataset (`datasets list`, GET /v1/datasets)."""

    name: str = Field(description="The dataset's name.")
    num_samples: int = Field(description="How many labelled samples it has.")
    num_classes: int = Field(description="How many classes its labels have.")
    num_shards: int = Field(description="How many shards it is stored in.")
    num_models: int = Field(description="How many models have complete predictions on it.")
    budgets: list[float] = Field(description="The accuracy budgets (points) whose pairs it keeps.")
    imagenet_val: bool = Field(
        description="ImageNet-1k validation: measured top-1 is compared with timm's published one."
    )
    shards: str = Field(
        description="Its shards' URLs in brace notation (s3://b/x-{000..9}.tar); empty for a "
        "dataset imported from records."
    )


class ModelSummary(Answer):
    """A model of the zoo, as listed."""

    name: str = Field(description="The model's name: a timm tag or a user's name.")
    source: str = Field(description="Where it came from: timm, checkpoint or records.")
    gmacs: float = Field(description="Its cost: GMACs per image at its evaluation input size.")
    params_m: float | None = Field(description="Millions of parameters; null if unknown.")
    random_weights: bool = Field(description="Evaluated with random weights (a test model).")
    images_per_s: dict[str, float] = Field(
        description="Measured throughput per device type, images per second."
    )


class ModelsPage(Answer):
    """Models cheapest first, filtered and paged (`models list`, GET /v1/models)."""

    items: list[ModelSummary] = Field(description="This page's models.")
    total: int = Field(description="How many models match the filters, on every page.")
    offset: int = Field(description="How many matching models come before this page.")
    limit: int = Field(description="The most models a page holds.")


class AccuracyCheck(Answer):
    """A pretrained model whose measured top-1 is far from timm's published figure."""

    model: str = Field(description="The model.")
    measured_top1: float = Field(description="Its measured top-1, in percent.")
    published_top1: float = Field(description="timm's published top-1, in percent.")
    img_size: int = Field(description="The input size timm's figure was measured at (pixels).")
    difference_points: float = Field(description="Measured minus published, in points.")
    message: str = Field(description="What to check.")


class DatasetAccuracyWarning(AccuracyCheck):
    dataset: str = Field(description="The dataset the top-1 was measured on.")


class ModelDetail(ModelSummary):
    """A model's profile, data config, throughput and accuracy (`models show`,
    GET /v1/models/{name})."""

    arch: str | None = Field(description="Its timm architecture.")
    input_size: list[int] | None = Field(description="Its evaluation input size (C, H, W).")
    crop_pct: float | None = Field(description="Its data config's crop fraction.")
    interpolation: str | None = Field(description="Its data config's resize interpolation.")
    num_classes: int | None = Field(description="Its classes; null: the architecture's default.")
    timm_version: str | None = Field(description="The timm version that evaluated it.")
    weights_id: str | None = Field(description="What identifies its weights.")
    superseded_at: str | None = Field(
        description="When its weights were replaced (ISO 8601); null while current."
    )
    data_config: dict[str, Any] | None = Field(description="Its full timm data config.")
    accuracy: dict[str, float] = Field(
        description="Top-1 accuracy (a fraction) on each dataset it is complete on."
    )
    published_top1: float | None = Field(
        description="timm's published ImageNet top-1 (percent); null if none is published."
    )
    accuracy_warnings: list[DatasetAccuracyWarning] = Field(
        description="Datasets where its measured top-1 is far from the published one."
    )


# ----- sweeps ------------------------------------------------------------------------------------
class SweepSummary(Answer):
    """A sweep, as listed (`sweep list`, GET /v1/sweeps)."""

    id: int = Field(description="The sweep's id.")
    dataset: str | None = Field(description="The dataset it evaluates on.")
    state: str = Field(description="queued, running, done, failed or cancelled.")
    models: int = Field(description="How many models it evaluates.")
    submitted_by: str = Field(description="Who submitted it.")
    submitted_at: str | None = Field(description="When (ISO 8601).")
    finished_at: str | None = Field(description="When it finished (ISO 8601); null until then.")


class ModelProgress(Answer):
    shards_done: int = Field(description="Shards whose predictions are stored.")
    shards: int = Field(description="Shards of the dataset.")


class UnitFailure(Answer):
    models: list[str] = Field(description="The models of the unit.")
    shard: int = Field(description="The unit's shard.")
    attempts: int = Field(description="How many times it was tried.")
    error: str = Field(description="Its last attempt's error.")


class SweepStatus(Answer):
    """A sweep's per-model progress, throughput, ETA and failures (`sweep status`,
    GET /v1/sweeps/{id})."""

    id: int = Field(description="The sweep's id.")
    dataset: str = Field(description="The dataset it evaluates on.")
    state: str = Field(description="queued, running, done, failed or cancelled.")
    error: str | None = Field(description="Why it failed; null otherwise.")
    search_error: str | None = Field(
        description="Why the saver search failed during its last run; null otherwise."
    )
    submitted_by: str = Field(description="Who submitted it.")
    submitted_at: str | None = Field(description="When (ISO 8601).")
    finished_at: str | None = Field(description="When it finished (ISO 8601).")
    driver: str | None = Field(description="host:pid of its running driver.")
    heartbeat_at: str | None = Field(description="The driver's last heartbeat (ISO 8601).")
    options: dict[str, Any] = Field(description="Its evaluation options, as submitted.")
    models: dict[str, ModelProgress] = Field(description="Progress per model.")
    units: dict[str, int] = Field(description="How many work units are in each state.")
    images_per_worker_s: float | None = Field(description="Images per worker-second so far.")
    eta_s: float | None = Field(description="Seconds left, estimated; null unless running.")
    accuracy_warnings: list[AccuracyCheck] = Field(
        description="On ImageNet-1k validation: models far from timm's published top-1."
    )
    failures: list[UnitFailure] = Field(description="Units not done whose last attempt failed.")
    retried_units: int = Field(description="Units done after more than one attempt.")


class SubmittedSweep(SweepStatus):
    """A submitted sweep's status, and whether its driver was started."""

    started: str | None = Field(
        description="How its driver was started (a Ray job or a process); null if not started."
    )


# ----- probes ------------------------------------------------------------------------------------
class Health(Answer):
    status: str = Field(description="ok: the process is up.")


class Ready(Answer):
    status: str = Field(description="ready: the database answers and has this schema.")
    schema_revision: str | None = Field(
        alias="schema", description="The database's schema revision."
    )


class ErrorAnswer(Answer):
    """Every failure: 401/403 auth, 404 an unknown name, 409 a conflict, 422 a bad parameter,
    503 the database unreachable."""

    error: str = Field(description="What went wrong, and what to do.")
    detail: list[str] | None = Field(
        default=None, description="With 422 for request validation: each problem."
    )
