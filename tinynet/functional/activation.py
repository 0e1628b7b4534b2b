"""Activations: the reference kernels.

Element-wise activations, y = f(x) for every element on its own (any shape, 0-d
included). Since y[k] depends on x[k] alone, the chain rule has a single term::

    dL/dx[k] = dL/dy[k] * f'(x[k])          dx = dy * f'(x)      (x's shape)

so each backward below is "dy times the local slope", with the slope written from
whatever the forward kept (the output y when f' is a function of y, else x).

Softmax and LogSoftmax are not element-wise: every output along ``dim`` depends on every
input along it; their backward multiplies dy by the Jacobian, written without building it.

Every ``*_forward`` returns ``(y, cache)``; every ``*_backward(dy, cache)`` returns dx.
"""

from __future__ import annotations

import math

from ..backend import get_array_module


# ----------------------------------------------------------------------------- ReLU
def relu_forward(x):
    """y = max(x, 0). The cache is the mask x > 0 (NaN stays NaN in y, as in PyTorch)."""
    xp = get_array_module(x)
    return xp.maximum(x, 0), x > 0


def relu_backward(dy, mask):
    """f'(x) = 1 for x > 0, else 0 (0 at x = 0, as PyTorch): dx = dy * [x > 0]."""
    return dy * mask


def leaky_relu_forward(x, negative_slope: float = 0.01):
    """y = x for x > 0, else negative_slope * x. The cache is the mask x > 0 and the slope."""
    xp = get_array_module(x)
    mask = x > 0
    return xp.where(mask, x, x * negative_slope), (mask, negative_slope)


def leaky_relu_backward(dy, cache):
    """f'(x) = 1 for x > 0, else negative_slope (also at x = 0, as PyTorch)."""
    xp = get_array_module(dy)
    mask, negative_slope = cache
    return xp.where(mask, dy, dy * negative_slope)


def elu_forward(x, alpha: float = 1.0):
    """y = x for x > 0, else alpha (e^x - 1). ``expm1(min(x, 0))`` never overflows."""
    xp = get_array_module(x)
    y = xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))
    return y, (x > 0, y, alpha)


def elu_backward(dy, cache):
    """f'(x) = 1 for x > 0, else alpha e^x = y + alpha (so y is all that is needed)."""
    xp = get_array_module(dy)
    mask, y, alpha = cache
    return xp.where(mask, dy, dy * (y + alpha))


# ----------------------------------------------------------------------------- Tanh
def tanh_forward(x):
    """y = tanh(x); the cache is y."""
    xp = get_array_module(x)
    y = xp.tanh(x)
    return y, y


def tanh_backward(dy, y):
    """tanh' = 1 - tanh^2 = 1 - y^2."""
    return dy * (1 - y * y)


# ----------------------------------------------------------------------------- Sigmoid
def sigmoid(x):
    """The logistic function 1 / (1 + e^-x), computed without overflow.

    With z = e^-|x| (in (0, 1], never overflows): for x >= 0 it is 1 / (1 + z), for
    x < 0 it is e^x / (1 + e^x) = z / (1 + z). Both keep small outputs' precision.
    """
    xp = get_array_module(x)
    z = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + z), z / (1 + z))


def sigmoid_forward(x):
    """y = sigmoid(x); the cache is y."""
    y = sigmoid(x)
    return y, y


def sigmoid_backward(dy, y):
    """sigmoid' = e^-x / (1 + e^-x)^2 = y (1 - y)."""
    return dy * (y * (1 - y))


# ----------------------------------------------------------------------------- SiLU
def silu_forward(x):
    """y = x sigmoid(x) (also called swish); the cache is x and s = sigmoid(x)."""
    s = sigmoid(x)
    return x * s, (x, s)


def silu_backward(dy, cache):
    """(x s)' = s + x s (1 - s) = s (1 + x (1 - s)), by the product rule."""
    x, s = cache
    return dy * (s * (1 + x * (1 - s)))


# ----------------------------------------------------------------------------- GELU
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


def gelu_forward(x, approximate: str = "none"):
    """GELU, as ``torch.nn.GELU(approximate)``. The cache is x (and tanh(u) for "tanh").

    ``"none"``: y = x Phi(x), Phi the standard normal CDF, Phi(x) = (1 + erf(x/sqrt 2)) / 2.
    ``"tanh"``: y = x (1 + tanh(u)) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3).
    """
    xp = get_array_module(x)
    if approximate == "tanh":
        t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))
        return 0.5 * x * (1 + t), (x, t, approximate)
    cdf = 0.5 * (1 + erf(x * _SQRT_HALF))
    return x * cdf, (x, cdf, approximate)


def gelu_backward(dy, cache):
    """``"none"``: (x Phi(x))' = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi).

    ``"tanh"``: with t = tanh(u), y' = (1 + t) / 2 + x (1 - t^2) u' / 2 and
    u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """
    xp = get_array_module(dy)
    x, t_or_cdf, approximate = cache
    if approximate == "tanh":
        t = t_or_cdf
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
    pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
    return dy * (t_or_cdf + x * pdf)


# The error function, on any array module (NumPy has none; CuPy's is in cupyx). Cephes'
# rational approximations (ndtr.c), accurate to about 1e-16 relative in float64:
#   |x| <= 1:      erf(x)  = x T(x^2) / U(x^2)
#   1 < |x| < 8:   erfc(|x|) = e^(-x^2) P(|x|) / Q(|x|)
#   |x| >= 8:      erfc(|x|) = e^(-x^2) R(|x|) / S(|x|)        and erf = 1 - erfc
# (coefficients highest power first; U, Q and S have a leading 1 left out).
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)
_ERFC_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
           6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_ERFC_S = (2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
           1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)


def _polynomial(x, coefficients, leading_one: bool = False):
    """Horner's rule: c0 x^n + c1 x^(n-1) + ... (with a leading x^(n+1) if ``leading_one``)."""
    xp = get_array_module(x)
    y = x + coefficients[0] if leading_one else xp.zeros_like(x) + coefficients[0]
    for c in coefficients[1:]:
        y = y * x + c
    return y


def erf(x):
    """The error function erf(x) = 2/sqrt(pi) int_0^x e^(-t^2) dt, element-wise, in x's dtype.

    Each branch is evaluated on clipped arguments (|x| <= 1 for the first, |x| <= 30 for
    erfc, where it has long underflowed to 0), so no branch overflows, and ``where``
    picks the right one; erf(+-inf) = +-1 and NaN stays NaN.
    """
    xp = get_array_module(x)
    s = xp.clip(x, -1, 1)
    z = s * s
    small = s * _polynomial(z, _ERF_T) / _polynomial(z, _ERF_U, leading_one=True)
    a = xp.minimum(xp.abs(x), 30)
    mid = _polynomial(a, _ERFC_P) / _polynomial(a, _ERFC_Q, leading_one=True)
    far = _polynomial(a, _ERFC_R) / _polynomial(a, _ERFC_S, leading_one=True)
    erfc = xp.exp(-a * a) * xp.where(a < 8, mid, far)       # erfc(|x|)
    large = xp.where(x < 0, erfc - 1, 1 - erfc)              # erf(x) = sign(x) (1 - erfc(|x|))
    return xp.where(xp.abs(x) <= 1, small, large)


# ----------------------------------------------------------------------------- softmax
def softmax_forward(x, dim: int):
    """y = exp(x) / sum(exp(x)) along ``dim``, with the max subtracted first so no exp
    overflows (the ratio is unchanged). The cache is y and dim."""
    xp = get_array_module(x)
    if x.size == 0:                                    # nothing to normalise
        return x.copy(), (x.copy(), dim)
    e = xp.exp(x - x.max(axis=dim, keepdims=True))
    y = e / e.sum(axis=dim, keepdims=True)
    return y, (y, dim)


def softmax_backward(dy, cache):
    """dy_j/dx_k = y_j ([j == k] - y_k) along dim (the Jacobian diag(y) - y y^T), so

        dx_k = sum_j dy_j y_j ([j == k] - y_k) = y_k (dy_k - sum_j dy_j y_j)
    """
    y, dim = cache
    return y * (dy - (dy * y).sum(axis=dim, keepdims=True))


def log_softmax_forward(x, dim: int):
    """y = x - log sum(exp(x)) along ``dim`` (log-sum-exp with the max taken out).
    The cache is softmax(x) = exp(y) and dim."""
    xp = get_array_module(x)
    if x.size == 0:
        return x.copy(), (x.copy(), dim)
    shifted = x - x.max(axis=dim, keepdims=True)
    y = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
    return y, (xp.exp(y), dim)


def log_softmax_backward(dy, cache):
    """dy_j/dx_k = [j == k] - softmax_k, so dx_k = dy_k - softmax_k sum_j dy_j."""
    p, dim = cache
    return dy - p * dy.sum(axis=dim, keepdims=True)
