"""Where data meets models: image sources, shard writing and reading, model identity and building,
preprocessing, evaluation of shards, work units, profiling, the cascade runtime; the Ray actor
(``actor.py``) is the only module here that imports Ray."""
