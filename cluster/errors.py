"""The errors a user can act on; the command line prints them as one line and exits 1."""


class InputError(ValueError):
    """Bad input (a name, a file, an option); the message says what to change."""


class ServiceError(RuntimeError):
    """A service (object store, shard, local server) failed; the message names it and the cause."""


class SchemaOutOfDate(RuntimeError):
    """The database exists but is at an older schema than this saverzoo needs."""
