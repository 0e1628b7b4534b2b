"""Parameter: a trainable array (``.data``) and its accumulated gradient (``.grad``)."""

from __future__ import annotations

from typing import Any


class Parameter:
    """A trainable tensor, as ``torch.nn.Parameter``.

    Attributes:
        data: the array, shape fixed at construction (e.g. ``(D_out, D_in)`` for Linear).
        grad: ``None`` until a backward pass writes it, then an array of ``data``'s shape
            and dtype. Backward passes *add* into it (``accumulate``).

    As in PyTorch, ``zero_grad()`` (``set_to_none=True``, the default) sets ``grad`` to
    None, so the next backward stores a *new* array: a gradient a user kept
    (``g = p.grad``) never changes afterwards. ``zero_grad(set_to_none=False)`` zeroes
    the array in place instead, and the next backward adds into that same array.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: Any):
        self.data = data
        self.grad = None

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    def accumulate(self, g) -> None:
        """``grad += g`` (PyTorch semantics: a new array when grad is None, else in place).

        ``g`` must be an array the caller owns (a kernel's fresh result), since it is
        stored as it is when grad is None, and have ``data``'s shape.
        """
        if tuple(getattr(g, "shape", ())) != tuple(self.data.shape):
            from .errors import ShapeError
            raise ShapeError(f"gradient of shape {tuple(getattr(g, 'shape', ()))} for a "
                             f"parameter of shape {tuple(self.data.shape)}: a gradient has "
                             f"the shape of what it is the gradient of")
        if self.grad is None:
            self.grad = g
        else:
            self.grad += g

    def zero_grad(self, set_to_none: bool = True) -> None:
        if set_to_none:
            self.grad = None
        elif self.grad is not None:
            self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"
