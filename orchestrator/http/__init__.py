"""The HTTP interface: the FastAPI app (``api``) and the reports it serves (``reports``)."""
