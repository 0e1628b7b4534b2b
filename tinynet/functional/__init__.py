"""Stateless kernels: every layer's maths as functions of arrays (the reference set).

Each layer in :mod:`tinynet.layers` holds parameters and a cache and calls a pair of
functions here, as ``torch.nn`` modules call ``torch.nn.functional``::

    y, cache = linear_forward(x, weight, bias)
    dx, dweight, dbias = linear_backward(dy, cache)

This namespace is the **reference** set, written to be read: plain array code, the
derivation and the shapes beside every line, no buffers, chunks or threads. Start here:

* :mod:`.linear`          Linear
* :mod:`.activation`      ReLU, LeakyReLU, ELU, Tanh, Sigmoid, SiLU, GELU, Softmax, LogSoftmax
* :mod:`.normalization`   BatchNorm1d/2d, LayerNorm
* :mod:`.dropout`         Dropout, Dropout2d
* :mod:`.conv`            Conv2d (im2col, three products, col2im), padding modes
* :mod:`.pool`            MaxPool2d, AvgPool2d, AdaptiveAvgPool2d
* :mod:`.loss`            CrossEntropyLoss, NLLLoss, MSELoss, L1Loss, BCEWithLogitsLoss

:mod:`tinynet.functional.fast` has the same functions, faster where a faster version
won on the benchmarks; the layers run those by default (``tinynet.set_kernels``).
"""

from .activation import (
    elu_backward,
    elu_forward,
    erf,
    gelu_backward,
    gelu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    log_softmax_backward,
    log_softmax_forward,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_backward,
    sigmoid_forward,
    silu_backward,
    silu_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from .conv import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv_output_size,
    im2col,
    pad2d_backward,
    pad2d_forward,
)
from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .loss import (
    bce_with_logits_backward,
    bce_with_logits_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    l1_loss_backward,
    l1_loss_forward,
    mse_loss_backward,
    mse_loss_forward,
    nll_loss_backward,
    nll_loss_forward,
)
from .normalization import batch_norm_forward, layer_norm_forward, norm_backward
from .pool import (
    adaptive_avgpool2d_backward,
    adaptive_avgpool2d_forward,
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
    maxpool2d_indices,
    pool_output_size,
)

# The kernels a layer calls: every one of these names exists in ``functional.fast`` too.
KERNELS = (
    "linear_forward", "linear_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "elu_forward", "elu_backward", "tanh_forward", "tanh_backward",
    "sigmoid_forward", "sigmoid_backward", "silu_forward", "silu_backward",
    "gelu_forward", "gelu_backward", "softmax_forward", "softmax_backward",
    "log_softmax_forward", "log_softmax_backward",
    "batch_norm_forward", "layer_norm_forward", "norm_backward",
    "dropout_forward", "dropout_backward",
    "conv2d_forward", "conv2d_backward", "pad2d_forward", "pad2d_backward",
    "maxpool2d_forward", "maxpool2d_backward", "maxpool2d_indices",
    "avgpool2d_forward", "avgpool2d_backward",
    "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward",
    "cross_entropy_forward", "cross_entropy_backward", "nll_loss_forward",
    "nll_loss_backward", "mse_loss_forward", "mse_loss_backward",
    "l1_loss_forward", "l1_loss_backward",
    "bce_with_logits_forward", "bce_with_logits_backward",
)

__all__ = [
    "KERNELS",
    "adaptive_avgpool2d_backward",
    "adaptive_avgpool2d_forward",
    "avgpool2d_backward",
    "avgpool2d_forward",
    "batch_norm_forward",
    "bce_with_logits_backward",
    "bce_with_logits_forward",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv_output_size",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "dropout_backward",
    "dropout_forward",
    "elu_backward",
    "elu_forward",
    "erf",
    "gelu_backward",
    "gelu_forward",
    "im2col",
    "l1_loss_backward",
    "l1_loss_forward",
    "layer_norm_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "linear_backward",
    "linear_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "maxpool2d_backward",
    "maxpool2d_forward",
    "maxpool2d_indices",
    "mse_loss_backward",
    "mse_loss_forward",
    "nll_loss_backward",
    "nll_loss_forward",
    "norm_backward",
    "pad2d_backward",
    "pad2d_forward",
    "pool_output_size",
    "relu_backward",
    "relu_forward",
    "sigmoid",
    "sigmoid_backward",
    "sigmoid_forward",
    "silu_backward",
    "silu_forward",
    "softmax_backward",
    "softmax_forward",
    "tanh_backward",
    "tanh_forward",
]
