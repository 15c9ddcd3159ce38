"""Errors that reach the user as one line (the CLI prints ``Error: <message>`` and exits 1).

Each message names the file or setting at fault and, where there is one, what to do about it.
"""


class WavegenError(Exception):
    """Base class: anything the user can fix."""


class ConfigError(WavegenError):
    """A recipe or ``--set`` override is unknown, badly typed or out of range."""


class OutOfRange(ConfigError):
    """An option's value outside its range (a length, a stream count, a temperature): the CLI
    makes it a usage error, exit status 2, in every command, as click's own range checks are."""


class DataError(WavegenError):
    """A dataset or prepared-data folder is missing, empty or unreadable."""


class CheckpointError(WavegenError):
    """A checkpoint or run folder is missing, corrupt or of another shape."""


class EngineUnavailable(WavegenError):
    """A sampling engine cannot run here (no compiler, no GPU, no Triton...); the message says why."""


class TrainingInterrupted(WavegenError):
    """Training stopped on Ctrl-C or SIGTERM, after saving a checkpoint where it could."""


class DistributedError(WavegenError):
    """A training process of a distributed run failed or lost contact with the others."""


class OutOfMemory(WavegenError):
    """A training step needs more memory than the device has."""


class TrainingDiverged(WavegenError):
    """Training stopped: too many steps in a row had a non-finite loss or gradient norm."""


class WriteError(WavegenError):
    """A file could not be written (a full disk, no permission...). ``reason`` says why in
    words (``no space left on device``); the message adds the path and what was kept."""

    def __init__(self, path, reason: str, outcome: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason} ({outcome})")


class PlayerUnavailable(WavegenError):
    """Audio cannot be played here: no ``sounddevice`` package, no PortAudio, or no output device."""
