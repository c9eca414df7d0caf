"""The CLI, sweep planning and scheduling, evaluation in-process, exports and reports."""

# Sets Ray's token authentication mode before any module of this package imports Ray.
import cluster.ray_cluster  # noqa: F401
