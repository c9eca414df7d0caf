"""One router per resource; ``orchestrator.http.api`` joins them under ``/v1``."""
