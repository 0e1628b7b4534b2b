"""Residual: y = body(x) + shortcut(x), its backward, naming, and the basic block vs PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import tinynet
from tinynet.errors import ShapeError
from tinynet.layers import BatchNorm2d, Conv2d, Linear, ReLU, Residual, residual_block


def test_identity_shortcut_forward_and_backward(xp):
    rng = np.random.default_rng(0)
    body = tinynet.Sequential(Linear(4, 4), ReLU(), Linear(4, 4)).double()
    block = xp.to(Residual(body))
    x = rng.standard_normal((3, 4))
    y = block(xp.asarray(x))
    np.testing.assert_allclose(xp.asnumpy(y), xp.asnumpy(body(xp.asarray(x))) + x, rtol=1e-12)
    block(xp.asarray(x))
    dy = rng.standard_normal((3, 4))
    dy_dev = xp.asarray(dy)
    dx = xp.asnumpy(block.backward(dy_dev))
    np.testing.assert_array_equal(xp.asnumpy(dy_dev), dy)
    # finite differences through the whole block
    eps = 1e-6
    for i, j in [(0, 0), (1, 2), (2, 3)]:
        e = np.zeros_like(x)
        e[i, j] = eps
        up = float((xp.asnumpy(block(xp.asarray(x + e))) * dy).sum())
        down = float((xp.asnumpy(block(xp.asarray(x - e))) * dy).sum())
        assert abs((up - down) / (2 * eps) - dx[i, j]) < 1e-6


def test_projection_shortcut_and_state_dict_names():
    block = Residual(tinynet.Sequential(Conv2d(2, 4, 3, 2, 1)),
                     tinynet.Sequential(Conv2d(2, 4, 1, 2)))
    assert list(block.state_dict()) == ["body.0.weight", "body.0.bias",
                                        "projection.0.weight", "projection.0.bias"]
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 5)).astype(np.float32)
    y = block(x)
    assert y.shape == (2, 4, 3, 3)
    dx = block.backward(np.ones_like(y))
    assert dx.shape == x.shape
    g = block.projection[0].weight.grad.copy()
    assert g is not None and np.abs(g).sum() > 0
    assert block.backward(np.ones_like(y), input_grad=False) is None
    np.testing.assert_allclose(block.projection[0].weight.grad, 2 * g, rtol=1e-5)


def test_projection_can_be_assigned_later():
    block = Residual(Linear(2, 3))
    assert block.projection is None
    block.projection = Linear(2, 3)
    assert isinstance(block.projection, Linear)
    assert block(np.ones((1, 2), np.float32)).shape == (1, 3)
    assert list(block.state_dict())[2:] == ["projection.weight", "projection.bias"]


def test_shape_mismatch_without_projection_is_a_shape_error():
    block = tinynet.Sequential(Residual(tinynet.Sequential(Conv2d(2, 4, 3, 1, 1))))
    expected = r"Residual '0'.*\(1, 4, 5, 5\).*\(1, 2, 5, 5\).*projection"
    with pytest.raises(ShapeError, match=expected):
        block(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(TypeError, match="Module"):
        Residual(lambda x: x)


@pytest.mark.parametrize("cin,cout,stride", [(3, 3, 1), (3, 6, 2)])
def test_residual_block_matches_pytorch(cin, cout, stride, torch):
    nn = torch.nn
    tinynet.manual_seed(0)
    block = residual_block(cin, cout, stride)

    class TorchResidual(nn.Module):
        def __init__(self, body, projection=None):
            super().__init__()
            self.body = body
            self.projection = projection

        def forward(self, x):
            return self.body(x) + (self.projection(x) if self.projection is not None else x)

    body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cout))
    proj = None
    if stride != 1 or cin != cout:
        proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))
    twin = nn.Sequential(TorchResidual(body, proj), nn.ReLU())
    ours, theirs = block.state_dict(), twin.state_dict()
    assert list(ours) == list(theirs)
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.items()})
    x = np.random.default_rng(2).standard_normal((2, cin, 7, 7)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = twin(tx)
    y = block(x)
    # float32 sums in another order than PyTorch's, as in test_conv/test_batchnorm:
    # measured at most 7.6e-6 absolute (gradients up to ~40), 3.2e-5 relative
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(block.backward(dy), tx.grad.numpy(), **tol)
    tw = dict(twin.named_parameters())
    for name, p in block.named_parameters():
        np.testing.assert_allclose(p.grad, tw[name].grad.numpy(), err_msg=name, **tol)
    assert isinstance(block[0].body[1], BatchNorm2d)
