"""The one exception type users see, and its specialisations."""


class SamtrackError(Exception):
    """An error a user can cause and fix (bad path, corrupt file, wrong checkpoint, bad prompt).

    The message says what went wrong and what to do; the CLI prints it on one line.
    """


class InputError(SamtrackError):
    """A frame source, mask file or prompt that cannot be used."""


class ModelError(SamtrackError):
    """Missing, wrong or corrupt model weights."""
