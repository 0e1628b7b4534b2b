"""Errors a user can cause. Every one derives from :class:`TinynetError`.

Catch ``TinynetError`` to handle anything tinynet rejects; the subclasses say
which kind of input was wrong. Messages name what was given and what was expected.
"""


class TinynetError(Exception):
    """Base class of every error caused by bad input to tinynet."""


class ShapeError(TinynetError, ValueError):
    """An array had the wrong number of dimensions or the wrong size.

    The message names the layer (its state_dict prefix and type), the shape it got
    and the shape it expected.
    """


class DTypeError(TinynetError, TypeError):
    """An array had a dtype the layer cannot use (e.g. float labels, int images)."""


class LabelError(TinynetError, ValueError):
    """Class labels outside ``[0, num_classes)`` or of the wrong kind."""


class NonFiniteError(TinynetError, FloatingPointError):
    """NaN or inf found where the opt-in check (``tinynet.set_checks(True)``) looks."""


class DataError(TinynetError, OSError):
    """A data or checkpoint file is missing, truncated, corrupt or untrusted."""


class StateDictError(TinynetError, KeyError):
    """A state_dict does not fit the module: missing, unexpected or mis-shaped keys."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DeviceError(TinynetError, RuntimeError):
    """A device was asked for that is not available (e.g. "cuda" without CuPy)."""


class ArgumentError(TinynetError, ValueError):
    """An argument is out of its range or of the wrong kind (e.g. ``SGD(lr=-1)``,
    ``lr=nan``, ``Dropout(1.5)``, an unknown ``padding_mode``); the message names it and
    what was expected."""


class CheckpointError(TinynetError, OSError):
    """A checkpoint folder cannot be used (not writable, not a folder, in use by another
    run) or a checkpoint could not be written; the last good checkpoint is kept."""
