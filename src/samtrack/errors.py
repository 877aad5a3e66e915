"""The one exception type users see, and its specialisations."""


class SamtrackError(Exception):
    """An error a user can cause and fix (bad path, corrupt file, wrong checkpoint, bad prompt).

    The message says what went wrong and what to do; the CLI prints it on one line.
    """


class InputError(SamtrackError):
    """A frame source, mask file or prompt that cannot be used."""


class OutputError(InputError):
    """An output that cannot be written: the disk is full, the folder is read-only or protected, or
    the run directory is in use or is not a run. `errno` is the operating system's error number, if any."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class ModelError(SamtrackError):
    """Missing, wrong or corrupt model weights."""
