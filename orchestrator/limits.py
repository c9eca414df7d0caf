"""Bounds and defaults of the answers, shared by the command line and the HTTP API: in a module
that imports nothing, so `--help` shows them without loading the database layer."""

MAX_OFFSET = 10**9
MAX_PAGE = 1000
DEFAULT_ALTERNATIVES = 5
MAX_CANDIDATES = 10_000  # a zoo's size: every chain
