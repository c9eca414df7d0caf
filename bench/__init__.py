"""Every benchmark of saverzoo, each run as ``python -m bench.<name>``; figures in RESULTS.md."""
