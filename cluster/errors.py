"""The error every layer raises for input a user can fix: the message says what to do."""


class InputError(ValueError):
    """Bad input (a name, a file, an option); the command line prints it as one line."""
