"""The one exception type users see, and its specialisations."""


class SamtrackError(Exception):
    """An error a user can cause and fix (bad path, corrupt file, wrong checkpoint, bad prompt).

    The message says what went wrong and what to do; the CLI prints it on one line.
    """


class UsageError(SamtrackError):
    """A command that cannot be right whatever its input holds: a prompt outside the video or the frame,
    an option value out of range, an unknown model name. The CLI exits with 2 for these (1 otherwise)."""


class InputError(SamtrackError):
    """A frame source, mask file or prompt that cannot be used."""


class PromptError(InputError, UsageError):
    """A prompt, frame number or option value that does not fit the input (or any input)."""


class OutputError(InputError):
    """An output that cannot be written: the disk is full, the folder is read-only or protected, or
    the run directory is in use or is not a run. `errno` is the operating system's error number, if any."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class ModelError(SamtrackError):
    """Missing, wrong or corrupt model weights."""


class UnknownModelError(ModelError, UsageError):
    """A model name that is neither in the registry, a hub id nor an existing path."""
