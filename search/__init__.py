"""Saver search: the exact engine (numpy/numba) and the incremental service over the database."""
