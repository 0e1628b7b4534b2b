"""Every study model: exact parameter counts, and names/shapes equal to its PyTorch twin."""

from __future__ import annotations

import numpy as np
import pytest

import tinynet
from tinynet import models

COUNTS = {
    "base": 669_706, "wider": 1_863_690, "deeper": 932_362, "bn": 576_970,
    "wider-bn": 1_505_738, "deeper-bn": 579_194, "simplecnn": 421_642, "convbn": 858_506,
    "cifar-mlp-best": 3_709_194,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_count_is_exact(name):
    """The figures of docs/studies.md (checked with PyTorch there)."""
    assert tinynet.count_parameters(models.build(name)) == COUNTS[name]
    assert models.PARAMETER_COUNTS[name] == COUNTS[name]


def _torch_twin(name, nn):
    """The same architecture written directly in torch.nn, from docs/studies.md."""
    def mlp(d_in, hidden, bn=False):
        layers, prev = [nn.Flatten()], d_in
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU()] + ([nn.BatchNorm1d(h)] if bn else [])
            prev = h
        return nn.Sequential(*layers, nn.Linear(prev, 10))

    if name == "simplecnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "convbn":
        layers, prev = [], 1
        for c in (32, 64, 128):
            layers += [nn.Conv2d(prev, c, 3, 1, 1), nn.ReLU(), nn.BatchNorm2d(c),
                       nn.MaxPool2d(2, 2)]
            prev = c
        tail = mlp(1152, (512, 256, 128, 64), bn=True)
        return nn.Sequential(*layers, *tail)
    table = {"base": (784, (512, 512), False), "wider": (784, (1024, 1024), False),
             "deeper": (784, (512, 512, 512), False), "bn": (784, (512, 256, 128, 64), True),
             "wider-bn": (784, (1024, 512, 256, 128, 64), True),
             "deeper-bn": (784, (512, 256, 128, 64, 32, 16), True),
             "cifar-mlp-best": (3072, (1024, 512, 64, 64), False)}
    d_in, hidden, bn = table[name]
    return mlp(d_in, hidden, bn)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_names_and_shapes_equal_the_torch_twin(name, torch):
    ours = models.build(name)
    twin = _torch_twin(name, torch.nn)
    assert [(k, p.shape) for k, p in ours.named_parameters()] == \
        [(k, tuple(p.shape)) for k, p in twin.named_parameters()]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in twin.state_dict().items()]
    assert sum(p.numel() for p in twin.parameters()) == COUNTS[name]


@pytest.mark.parametrize("name", ["simplecnn", "convbn"])
def test_one_training_step_matches_pytorch(name, torch):
    """Same weights, same batch, float64: loss, every gradient and the updated weights agree
    to rounding (float64 so that a real difference cannot hide in float32 noise)."""
    tinynet.manual_seed(0)
    model = models.build(name).double()
    twin = _torch_twin(name, torch.nn).double()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 28, 28))
    t = rng.integers(0, 10, 16)
    loss_fn = tinynet.CrossEntropyLoss()
    loss = loss_fn(model(x), t)
    model.backward(loss_fn.backward(), input_grad=False)
    tloss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(t))
    tloss.backward()
    assert abs(loss - tloss.item()) < 1e-10
    tparams = dict(twin.named_parameters())
    for key, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[key].grad.numpy(), rtol=1e-7, atol=1e-10,
                                   err_msg=key)
    tinynet.SGD(model.parameters(), lr=0.1).step()
    torch.optim.SGD(twin.parameters(), lr=0.1).step()
    tstate = twin.state_dict()
    for key, v in model.state_dict().items():
        np.testing.assert_allclose(v, tstate[key].numpy(), rtol=1e-9, atol=1e-12, err_msg=key)
