"""The services above the workers and the search: answers, sweeps, ingest, reports, the demo,
and the interfaces that use them (``cli`` and ``http``)."""
