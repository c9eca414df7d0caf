"""Where data meets models: image sources, shard writing and reading (evaluation to come)."""
