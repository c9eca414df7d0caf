"""What enters the database: datasets of shards, in-process evaluation, TinySaver records in and
out."""
