"""The one error type every layer may raise for a problem the user must fix."""


class StageError(Exception):
    """A problem the user must fix; the CLI prints the message (which names file, column and rule)."""
