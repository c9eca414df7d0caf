"""Saver search: the exact engine (pure numpy/numba) and the incremental service over the database."""
