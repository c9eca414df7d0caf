"""Where the data meets the models: image sources, shard writing and reading (evaluation to come)."""
