"""One exception type for every problem a user can fix: the CLI prints it on one line, the app shows it."""


class TextdiffError(Exception):
    """Bad input, a missing file, an unreachable model: something the user can act on (never a bug)."""


class DataError(TextdiffError):
    """A dataset spec, file, column or label that cannot be used."""


class ModelError(TextdiffError):
    """A model name, directory or checkpoint that cannot be loaded."""
