"""Typed tables of saverzoo (SQLAlchemy 2.0).

Per-sample arrays are ``.npy`` blobs (see ``db.arrays``). Sample keys and labels live once per
dataset shard; a prediction chunk holds only the model's top-k classes (int16/int32) and
probabilities (float32) plus a digest of the keys it was computed on, so top-1 costs 6 bytes per
sample per model.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.deferral_rules import FOLDS


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    shard_urls: Mapped[str] = mapped_column(
        Text, default=""
    )  # brace notation, e.g. s3://b/x-{000..9}.tar
    num_samples: Mapped[int] = mapped_column(Integer)
    num_classes: Mapped[int] = mapped_column(Integer)
    label_source: Mapped[str] = mapped_column(String(200), default="")
    # ImageNet-1k validation: measured top-1 is checked against timm's published figures.
    imagenet_val: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Accuracy drops (hundredths of a point) whose pairs and best savers are kept up to date.
    budgets_centipoints: Mapped[list[int]] = mapped_column(JSON, default=list)
    # The confidence signals whose pairs are kept up to date ("max" always; "margin" once asked).
    confidence_signals: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: ["max"], server_default='["max"]'
    )
    # Share of samples (by key hash) that pick thresholds in held-out estimates; fixed per dataset
    # so that every pair is split the same way.
    holdout_fraction: Mapped[float] = mapped_column(Float, default=0.5, server_default="0.5")
    # Folds (by key hash) of the learned confidence's cross-fitting; fixed per dataset so that
    # every saver's rules are trained and scored on the same folds (``search.learned``).
    learned_folds: Mapped[int] = mapped_column(Integer, default=FOLDS, server_default=str(FOLDS))
    # Bumped by every best-saver update; the UPDATE's row lock serialises concurrent updaters.
    search_revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    shards: Mapped[list[DatasetShard]] = relationship(
        back_populates="dataset", order_by="DatasetShard.shard_index", cascade="all, delete-orphan"
    )


class DatasetShard(Base):
    __tablename__ = "dataset_shards"
    __table_args__ = (UniqueConstraint("dataset_id", "shard_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    shard_index: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text, default="")
    num_samples: Mapped[int] = mapped_column(Integer)
    sample_keys: Mapped[bytes] = mapped_column(LargeBinary)  # npy, unicode strings
    labels: Mapped[bytes] = mapped_column(LargeBinary)  # npy, int16/int32
    keys_digest: Mapped[str] = mapped_column(String(32))
    # Samples whose JPEG does not decode: key -> reason. They stay in the shard, counted here.
    failed_samples: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")

    dataset: Mapped[Dataset] = relationship(back_populates="shards")


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)  # timm arch.tag or a user's name
    arch: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20))  # timm | checkpoint | records
    gmacs: Mapped[float] = mapped_column(Float)  # cost: GMACs at the evaluation input size
    params_m: Mapped[float | None] = mapped_column(Float)  # millions of parameters
    input_size: Mapped[list[int] | None] = mapped_column(JSON)  # (C, H, W)
    crop_pct: Mapped[float | None] = mapped_column(Float)
    interpolation: Mapped[str | None] = mapped_column(String(20))
    data_config: Mapped[dict | None] = mapped_column(JSON)  # the full timm data config
    timm_version: Mapped[str | None] = mapped_column(String(40))
    checkpoint: Mapped[str | None] = mapped_column(Text)
    num_classes: Mapped[int | None] = mapped_column(Integer)  # None: the architecture's default
    random_weights: Mapped[bool] = mapped_column(Boolean, default=False)
    # What identifies the weights (JSON of timm's pretrained cfg fields, or the checkpoint path).
    weights_id: Mapped[str | None] = mapped_column(Text)
    # Set when newer weights replaced these: the row (renamed name@weights) keeps its predictions
    # for the record, but no search, query or report counts it any more.
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class PredictionChunk(Base):
    __tablename__ = "prediction_chunks"
    __table_args__ = (
        UniqueConstraint("model_id", "dataset_id", "shard_index"),
        # "Which models are complete on this dataset" reads by dataset first.
        Index("ix_prediction_chunks_dataset", "dataset_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    shard_index: Mapped[int] = mapped_column(Integer)
    num_samples: Mapped[int] = mapped_column(Integer)
    keys_digest: Mapped[str] = mapped_column(String(32))  # must equal the shard's
    topk_classes: Mapped[bytes] = mapped_column(LargeBinary)  # npy (n, k) int16/int32
    topk_probs: Mapped[bytes] = mapped_column(LargeBinary)  # npy (n, k) float32
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class PredictionRevision(Base):
    """How many times a model's predictions on a dataset were written: every chunk write bumps
    it in the chunk's own transaction (``db.queries.store_chunks``). Stored search arrays carry
    the revision they were derived from, so a changed prediction makes them unusable."""

    __tablename__ = "prediction_revisions"
    __table_args__ = (UniqueConstraint("dataset_id", "model_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)


class StoredSearchArrays(Base):
    """What the saver search needs of one model on one dataset and confidence signal, derived
    from its prediction chunks once (``db.search_arrays``): per sample whether the top-1 class is
    right, the confidence, and the samples most confident first.

    Current only while ``revision`` equals the model's ``PredictionRevision`` and
    ``labels_digest`` the dataset's labels; otherwise derived again.
    """

    __tablename__ = "search_arrays"
    __table_args__ = (UniqueConstraint("dataset_id", "model_id", "confidence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    confidence: Mapped[str] = mapped_column(String(10))  # search.criteria.SIGNALS, learned-ho
    revision: Mapped[int] = mapped_column(Integer)  # the PredictionRevision derived from
    num_samples: Mapped[int] = mapped_column(Integer)
    labels_digest: Mapped[str] = mapped_column(String(32))
    # float32 confidences, the order (uint16 up to 65,536 samples, else uint32), packed bits
    arrays: Mapped[bytes] = mapped_column(LargeBinary)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class LearnedRules(Base):
    """The learned confidence's deferral rules of one saver on one dataset (``search.learned``):
    plain parameters (JSON), with what they were trained on, so that answers and exported
    cascades are reproducible. Current only while ``revision`` equals the model's
    ``PredictionRevision`` and ``basis`` the dataset's labels, folds and split; otherwise trained
    again."""

    __tablename__ = "learned_rules"
    __table_args__ = (UniqueConstraint("dataset_id", "model_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)  # the PredictionRevision trained on
    num_samples: Mapped[int] = mapped_column(Integer)
    basis: Mapped[str] = mapped_column(String(32))  # digest of labels, folds and holdout fraction
    folds: Mapped[int] = mapped_column(Integer)
    holdout_fraction: Mapped[float] = mapped_column(Float)
    library: Mapped[str] = mapped_column(String(100))  # e.g. "scikit-learn 1.6.1"
    rules: Mapped[dict] = mapped_column(JSON)  # search.learned.SaverRules.as_json()
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class PairResult(Base):
    """One (base, saver) pair under one criterion: in-sample and held-out operating points.

    ``criterion`` is ``budget`` (with ``max_drop_centipoints``) or ``paper`` (max drop 0). ΔC of the
    paper equals ``-saving``. Held-out columns: threshold and selection numbers from the
    calibration samples, the rest measured on the evaluation samples.
    """

    __tablename__ = "pair_results"
    __table_args__ = (
        UniqueConstraint(
            "dataset_id",
            "base_id",
            "saver_id",
            "criterion",
            "max_drop_centipoints",
            "confidence",
            name="uq_pair_results_key",
        ),
        # Ranks one base's savers under one criterion from the index alone: the API's
        # GET /v1/savers/{base}. On PostgreSQL the index also INCLUDEs the ranking columns
        # (saver_id, saving, accuracy and the two held-out calibration columns, migration 0006),
        # an index-only scan instead of reading ~1,000 scattered rows. They are not declared
        # here: a `postgresql_include` argument loads the PostgreSQL dialect in every command,
        # and the schema comes from the migrations, not from these classes.
        Index(
            "ix_pair_results_ranking",
            "dataset_id",
            "base_id",
            "criterion",
            "max_drop_centipoints",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    base_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    saver_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    criterion: Mapped[str] = mapped_column(String(10))
    max_drop_centipoints: Mapped[int] = mapped_column(Integer)
    # The confidence a sample exits on: "max" (top-1 probability) or "margin" (top-1 - top-2).
    confidence: Mapped[str] = mapped_column(String(10), default="max", server_default="max")
    threshold: Mapped[float] = mapped_column(Float)
    exit_ratio: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float] = mapped_column(Float)
    base_accuracy: Mapped[float] = mapped_column(Float)
    relative_cost: Mapped[float] = mapped_column(Float)
    saving: Mapped[float] = mapped_column(Float)
    holdout_threshold: Mapped[float] = mapped_column(Float)
    holdout_calibration_accuracy: Mapped[float] = mapped_column(Float)
    holdout_calibration_saving: Mapped[float] = mapped_column(Float)
    holdout_exit_ratio: Mapped[float] = mapped_column(Float)
    holdout_accuracy: Mapped[float] = mapped_column(Float)
    holdout_base_accuracy: Mapped[float] = mapped_column(Float)
    holdout_saving: Mapped[float] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class ModelScore(Base):
    """How many samples of a dataset a complete model gets right, in all and on the held-out
    evaluation half: what single-model answers (the frontier) compare cascades with. Written by
    the saver search with the pairs."""

    __tablename__ = "model_scores"
    __table_args__ = (UniqueConstraint("dataset_id", "model_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    correct: Mapped[int] = mapped_column(Integer)
    samples: Mapped[int] = mapped_column(Integer)
    holdout_correct: Mapped[int] = mapped_column(Integer)  # on the evaluation half
    holdout_samples: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class ChainResult(Base):
    """A base's best three-model cascade s1 -> s2 -> base under a budget, among the chains its
    ``candidates`` best savers make (``search.chains``); null savers where it has none."""

    __tablename__ = "chain_results"
    __table_args__ = (
        UniqueConstraint("dataset_id", "base_id", "max_drop_centipoints", "candidates"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    base_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    max_drop_centipoints: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[int] = mapped_column(Integer)  # K: the savers of each stage considered
    chains: Mapped[list] = mapped_column(JSON)  # the [s1, s2] model ids searched: its inputs
    s1_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    s2_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    threshold1: Mapped[float | None] = mapped_column(Float)
    threshold2: Mapped[float | None] = mapped_column(Float)
    exit1: Mapped[float | None] = mapped_column(Float)  # share of all samples answered at s1
    exit2: Mapped[float | None] = mapped_column(Float)
    correct: Mapped[int | None] = mapped_column(Integer)
    samples: Mapped[int] = mapped_column(Integer)
    saving: Mapped[float | None] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class ModelThroughput(Base):
    """Measured forward throughput of a model on a device type, at the batch size used."""

    __tablename__ = "model_throughput"
    __table_args__ = (UniqueConstraint("model_id", "device_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    device_type: Mapped[str] = mapped_column(String(100))  # "cpu", "NVIDIA H200", ...
    batch_size: Mapped[int] = mapped_column(Integer)
    images_per_s: Mapped[float] = mapped_column(Float)
    peak_memory_mb: Mapped[float | None] = mapped_column(Float)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class BestSaver(Base):
    """The current best pair of a base per criterion; ``selection`` is in_sample or holdout."""

    __tablename__ = "best_savers"
    __table_args__ = (
        UniqueConstraint(
            "dataset_id",
            "base_id",
            "criterion",
            "max_drop_centipoints",
            "selection",
            "confidence",
            name="uq_best_savers_key",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    base_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    criterion: Mapped[str] = mapped_column(String(10))
    max_drop_centipoints: Mapped[int] = mapped_column(Integer)
    selection: Mapped[str] = mapped_column(String(10))
    confidence: Mapped[str] = mapped_column(String(10), default="max", server_default="max")
    pair_id: Mapped[int] = mapped_column(ForeignKey("pair_results.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Sweep(Base):
    """Models to evaluate on a dataset, submitted by someone, run by a driver on a Ray cluster.

    ``state``: queued, running, done, failed (some unit failed every attempt), cancelled. Which
    (model, shard) work is done is never stored here: it is the prediction chunks that exist.
    """

    __tablename__ = "sweeps"
    __table_args__ = (UniqueConstraint("key", name="uq_sweeps_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Set by submitters that must not submit the same work twice (the watcher): unique.
    key: Mapped[str | None] = mapped_column(String(200))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    submitted_by: Mapped[str] = mapped_column(String(100))
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    model_patterns: Mapped[list[str]] = mapped_column(JSON)  # as given
    models: Mapped[list[str]] = mapped_column(JSON)  # what the patterns expanded to
    options: Mapped[dict] = mapped_column(JSON)  # mode, device, batch size, weights, attempts
    state: Mapped[str] = mapped_column(String(12), default="queued")
    error: Mapped[str | None] = mapped_column(Text)
    # The saver search's error during the last run (its process failed or died), apart from
    # ``error``, which the driver writes: the sweep may finish done while its search failed.
    search_error: Mapped[str | None] = mapped_column(Text)
    driver: Mapped[str | None] = mapped_column(String(200))  # host:pid of the running driver
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    units: Mapped[list[SweepUnit]] = relationship(
        back_populates="sweep", order_by="SweepUnit.unit_index", cascade="all, delete-orphan"
    )


class SweepUnit(Base):
    """A group of models on one shard: what one worker actor runs at a time, and its attempts."""

    __tablename__ = "sweep_units"
    __table_args__ = (UniqueConstraint("sweep_id", "unit_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    unit_index: Mapped[int] = mapped_column(Integer)
    models: Mapped[list[str]] = mapped_column(JSON)
    shard_index: Mapped[int] = mapped_column(Integer)
    gmacs: Mapped[float] = mapped_column(Float)  # the unit's compute: sum of model GMACs x samples
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending running done failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))  # node and actor of the last attempt
    images: Mapped[int] = mapped_column(Integer, default=0)  # images x models evaluated
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    sweep: Mapped[Sweep] = relationship(back_populates="units")


class RegistrySnapshot(Base):
    """The pretrained models an installed timm offered, recorded once per (version, contents)."""

    __tablename__ = "registry_snapshots"
    __table_args__ = (UniqueConstraint("timm_version", "digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    timm_version: Mapped[str] = mapped_column(String(40))
    digest: Mapped[str] = mapped_column(String(32))  # of every entry: equal registries, one row
    num_entries: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    entries: Mapped[list[RegistryEntry]] = relationship(
        back_populates="snapshot", cascade="all, delete-orphan"
    )


class RegistryEntry(Base):
    """One pretrained ``arch.tag``: what identifies its weights, and its data config."""

    __tablename__ = "registry_entries"
    __table_args__ = (UniqueConstraint("snapshot_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("registry_snapshots.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(300))
    weights: Mapped[dict] = mapped_column(JSON)  # hub id, file name, url, file as timm gives them
    data_config: Mapped[dict] = mapped_column(JSON)

    snapshot: Mapped[RegistrySnapshot] = relationship(back_populates="entries")
