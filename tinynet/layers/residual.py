"""Residual connections: ``y = body(x) + shortcut(x)``, and a ResNet basic block."""

from __future__ import annotations

from ..errors import ShapeError
from ..module import Module, Sequential


class Residual(Module):
    """``Residual(body, projection=None)``: y = body(x) + (projection(x) or x).

    Shapes: x any shape the body accepts; body(x) and the shortcut must have the same
    shape (else ShapeError: give a ``projection``, e.g. a 1x1 Conv2d + BatchNorm2d, when
    the body changes the channels or the resolution).

    Backward: the sum passes dy unchanged to both branches, so::

        dL/dx = body.backward(dy) + (projection.backward(dy) or dy)

    Parameters accumulate in each branch. Sub-modules are named ``body`` and
    ``projection`` (state_dict keys ``body.0.weight``, ``projection.0.weight``).
    """

    calls_children_once = True      # forward calls body and projection once each

    def __init__(self, body: Module, projection: Module | None = None) -> None:
        super().__init__()
        if not isinstance(body, Module):
            raise TypeError(f"Residual body must be a Module, got {type(body).__name__}")
        if projection is not None and not isinstance(projection, Module):
            raise TypeError(f"Residual projection must be a Module or None, got "
                            f"{type(projection).__name__}")
        self.body = body
        if projection is not None:
            self.projection = projection

    def __getattr__(self, name: str):
        # No projection is "projection is None", without storing a None attribute that
        # would shadow a projection module assigned later.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "projection":
                return None
            raise

    def forward(self, x):
        y = self.body(x)
        shortcut = self.projection(x) if self.projection is not None else x
        if tuple(y.shape) != tuple(shortcut.shape):
            what = "projection(x)" if self.projection is not None else "x (no projection)"
            raise ShapeError(f"{self.describe()}: body output has shape {tuple(y.shape)} but "
                             f"the shortcut {what} has shape {tuple(shortcut.shape)}; expected "
                             f"equal shapes (pass a projection that maps x to the body's shape)")
        return y + shortcut

    def backward(self, dy, input_grad: bool = True):
        dx_body = self.body.backward(dy, input_grad=input_grad)
        if self.projection is not None:
            dx_short = self.projection.backward(dy, input_grad=input_grad)
        else:
            dx_short = dy
        if not input_grad:
            return None
        return dx_body + dx_short


def residual_block(in_channels: int, out_channels: int, stride: int = 1) -> Sequential:
    """ResNet's basic block: ``Sequential(Residual(body, projection), ReLU())``.

    body = Conv3x3(stride) - BatchNorm2d - ReLU - Conv3x3 - BatchNorm2d (convolutions
    without bias, as BatchNorm's beta replaces it); projection = Conv1x1(stride) -
    BatchNorm2d when the channels or the stride change, else the identity.
    x ``(N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """
    from .activation import ReLU
    from .conv import Conv2d
    from .normalization import BatchNorm2d
    body = Sequential(
        Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), BatchNorm2d(out_channels),
        ReLU(),
        Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), BatchNorm2d(out_channels))
    projection = None
    if stride != 1 or in_channels != out_channels:
        projection = Sequential(Conv2d(in_channels, out_channels, 1, stride, 0, bias=False),
                                BatchNorm2d(out_channels))
    return Sequential(Residual(body, projection), ReLU())
