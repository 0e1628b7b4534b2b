"""Parameter: a trainable array (``.data``) and its accumulated gradient (``.grad``)."""

from __future__ import annotations

from typing import Any


class Parameter:
    """A trainable tensor, as ``torch.nn.Parameter``.

    Attributes:
        data: the array, shape fixed at construction (e.g. ``(D_out, D_in)`` for Linear).
        grad: ``None`` until a backward pass writes it, then an array of ``data``'s shape
            and dtype. Backward passes *add* into it; ``zero_grad()`` resets it to None.

    A backward pass that finds ``grad is None`` writes its product straight into a
    buffer kept from the previous step (``grad_buffer()``), so steady-state training
    allocates no gradient arrays and needs no extra pass to zero them.
    """

    __slots__ = ("_buffer", "data", "grad")

    def __init__(self, data: Any):
        self.data = data
        self.grad = None
        self._buffer = None

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    def grad_buffer(self):
        """An array to write a fresh gradient into (contents undefined)."""
        b = self._buffer
        if b is None or b.shape != self.data.shape or b.dtype != self.data.dtype \
                or type(b) is not type(self.data):
            from .backend import get_array_module
            b = get_array_module(self.data).empty_like(self.data)
            self._buffer = b
        return b

    def accumulate(self, g) -> None:
        """``grad += g`` (PyTorch semantics: set when None, add otherwise)."""
        if self.grad is None:
            buf = self.grad_buffer()
            buf[...] = g
            self.grad = buf
        else:
            self.grad += g

    def zero_grad(self, set_to_none: bool = True) -> None:
        if set_to_none:
            self.grad = None
        elif self.grad is not None:
            self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"
