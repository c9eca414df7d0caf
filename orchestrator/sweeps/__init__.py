"""Sweeps: plan (pure) -> store (sweep and unit rows) -> driver (Ray) -> completion bookkeeping;
launch starts a driver, watch makes sweeps of what timm releases."""
