"""User-facing layer: the typer CLI, imports, and (later) sweep planning and scheduling."""
