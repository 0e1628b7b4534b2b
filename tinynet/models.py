"""The models of the studies (``docs/studies.md``), built from tinynet layers.

Each builder returns a ``Sequential`` whose ``state_dict`` keys and shapes equal those of
the same ``torch.nn.Sequential``; ``MODELS`` maps the short names the CLI and the
experiments use to builders. Parameter counts (checked against PyTorch) are in
``PARAMETER_COUNTS``.
"""

from __future__ import annotations

from collections.abc import Callable

from .layers import ELU, Flatten, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .module import Module, Sequential

ACTIVATIONS: dict[str, Callable[[], Module]] = {
    "relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "leaky_relu": LeakyReLU, "elu": ELU,
}


def activation(name: str) -> Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_features: int, hidden: tuple, out_features: int = 10, act: str = "relu",
        batchnorm: bool = False, flatten: bool = True) -> Sequential:
    """Flatten, then ``Linear, act[, BatchNorm1d]`` per hidden width, then ``Linear`` to the classes.

    ``batchnorm`` puts BatchNorm1d after the activation, as the reports' BN MLPs do.
    """
    layers: list[Module] = [Flatten()] if flatten else []
    prev = in_features
    for h in hidden:
        layers += [Linear(prev, h), activation(act)]
        if batchnorm:
            from .layers import BatchNorm1d
            layers.append(BatchNorm1d(h))
        prev = h
    layers.append(Linear(prev, out_features))
    return Sequential(*layers)


def base_mlp(act: str = "relu") -> Sequential:
    """Flatten, Linear(784,512), ReLU, Linear(512,512), ReLU, Linear(512,10): 669,706 params."""
    return mlp(784, (512, 512), act=act)


def wider_mlp(act: str = "relu") -> Sequential:
    return mlp(784, (1024, 1024), act=act)


def deeper_mlp(act: str = "relu") -> Sequential:
    return mlp(784, (512, 512, 512), act=act)


def bn_mlp(hidden: tuple = (512, 256, 128, 64), in_features: int = 784) -> Sequential:
    return mlp(in_features, hidden, batchnorm=True)


def wider_bn_mlp() -> Sequential:
    return bn_mlp((1024, 512, 256, 128, 64))


def deeper_bn_mlp() -> Sequential:
    return bn_mlp((512, 256, 128, 64, 32, 16))


def simple_cnn(in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> Sequential:
    """Conv(1,32,3,p1), ReLU, MaxPool2, Conv(32,64,3,p1), ReLU, MaxPool2, Flatten,
    Linear(3136,128), ReLU, Linear(128,10): 421,642 params on 28x28."""
    from .layers import Conv2d, MaxPool2d
    side = image_size // 4
    return Sequential(
        Conv2d(in_channels, 32, 3, 1, 1), ReLU(), MaxPool2d(2, 2),
        Conv2d(32, 64, 3, 1, 1), ReLU(), MaxPool2d(2, 2),
        Flatten(), Linear(64 * side * side, 128), ReLU(), Linear(128, num_classes))


def convbn(in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
           channels: tuple = (32, 64, 128), tail: tuple = (512, 256, 128, 64)) -> Sequential:
    """Per c in channels: Conv(prev,c,3,p1), ReLU, BatchNorm2d, MaxPool2; Flatten; the
    BN-MLP tail. 858,506 params on 28x28."""
    from .layers import BatchNorm1d, BatchNorm2d, Conv2d, MaxPool2d
    layers: list[Module] = []
    prev, side = in_channels, image_size
    for c in channels:
        layers += [Conv2d(prev, c, 3, 1, 1), ReLU(), BatchNorm2d(c), MaxPool2d(2, 2)]
        prev, side = c, side // 2
    layers.append(Flatten())
    width = prev * side * side
    for h in tail:
        layers += [Linear(width, h), ReLU(), BatchNorm1d(h)]
        width = h
    layers.append(Linear(width, num_classes))
    return Sequential(*layers)


def cifar_mlp_best(act: str = "relu") -> Sequential:
    return mlp(3072, (1024, 512, 64, 64), act=act)


def cifar_mlp_small(act: str = "relu") -> Sequential:
    return mlp(3072, (784, 256), act=act)


MODELS: dict[str, Callable[[], Sequential]] = {
    "base": base_mlp, "wider": wider_mlp, "deeper": deeper_mlp,
    "bn": bn_mlp, "wider-bn": wider_bn_mlp, "deeper-bn": deeper_bn_mlp,
    "simplecnn": simple_cnn, "convbn": convbn,
    "cifar-mlp-best": cifar_mlp_best, "cifar-mlp-small": cifar_mlp_small,
}

PARAMETER_COUNTS = {
    "base": 669_706, "wider": 1_863_690, "deeper": 932_362, "bn": 576_970,
    "wider-bn": 1_505_738, "deeper-bn": 579_194, "simplecnn": 421_642, "convbn": 858_506,
    "cifar-mlp-best": 3_709_194,
}

# Input shape of one sample for each model, (C, H, W).
INPUT_SHAPES = {name: (1, 28, 28) for name in MODELS}
INPUT_SHAPES.update({"cifar-mlp-best": (3, 32, 32), "cifar-mlp-small": (3, 32, 32)})


def build(name: str) -> Sequential:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {sorted(MODELS)}")
    return MODELS[name]()


def count_parameters(model: Module) -> int:
    """Number of trainable parameter elements (``sum(p.numel() for p in parameters())``)."""
    total = 0
    for p in model.parameters():
        total += int(p.data.size)
    return total
