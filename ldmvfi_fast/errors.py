"""The package's error classes, under one base: :class:`LdmvfiError`.

Every error a user can cause (a bad checkpoint, a bad option, a bad frame, an unreadable
video, an output that exists) is an :class:`LdmvfiError`; the command line catches that
base and exits with :data:`EXIT_USER_ERROR` and a one-line message, no traceback. They
also derive from ``ValueError`` so that callers written before the base existed keep
working.
"""
from __future__ import annotations

__all__ = ["LdmvfiError", "CheckpointError", "ConfigError", "InputError", "PaddingError", "MediaError",
           "OptionError", "EngineError", "EXIT_OK", "EXIT_USER_ERROR", "EXIT_INTERNAL_ERROR", "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

#: exit status of the command line: success
EXIT_OK = 0
#: an unexpected failure (a bug): a traceback is printed
EXIT_INTERNAL_ERROR = 1
#: a user error (bad input, option, file, checkpoint): one line on stderr, nothing written
EXIT_USER_ERROR = 2
#: interrupted (Ctrl-C): nothing written
EXIT_INTERRUPTED = 130
#: terminated by SIGTERM (128 + 15), with nothing half-written left behind
EXIT_TERMINATED = 143


class LdmvfiError(ValueError):
    """Base of every error ldmvfi_fast raises on bad input; the message says what to do."""


class CheckpointError(LdmvfiError):
    """The file is not a usable LDMVFI checkpoint; the message says why."""


class ConfigError(LdmvfiError):
    """A configuration that ldmvfi_fast cannot build."""


class InputError(LdmvfiError):
    """Frames that cannot be interpolated (shape, channels, dtype, values, sizes)."""


class PaddingError(InputError):
    """A frame size the chosen padding mode cannot handle."""


class MediaError(LdmvfiError):
    """An unreadable or unwritable image/video/folder, or an output that already exists."""


class OptionError(LdmvfiError):
    """An option value outside its allowed range (steps, eta, seed, crf, ...)."""


class EngineError(LdmvfiError):
    """Exported engines that cannot be used: missing files, a manifest of another format,
    engines made from another checkpoint, a size outside their profiles."""
