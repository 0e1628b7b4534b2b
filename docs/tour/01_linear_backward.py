# %% [markdown]
# # 1. A Linear layer's backward, derived by hand
#
# A `Linear(D_in, D_out)` layer computes, for a batch `x` of shape `(N, D_in)`,
#
# $$y = x W^\top + b, \qquad y_{no} = \sum_i x_{ni} W_{oi} + b_o,$$
#
# with `W` of shape `(D_out, D_in)` (PyTorch's layout) and `b` of shape `(D_out,)`.
# Backprop hands the layer $\delta = \partial L/\partial y$ (shape `(N, D_out)`) and asks
# for three things: $\partial L/\partial x$ for the layer below, and $\partial L/\partial W$,
# $\partial L/\partial b$ for the optimizer.
#
# **The chain rule, one element at a time.** $L$ depends on $W_{oi}$ only through the
# outputs $y_{no}$ of row $o$, for every sample $n$, and $\partial y_{no}/\partial W_{oi} = x_{ni}$:
#
# $$\frac{\partial L}{\partial W_{oi}} = \sum_n \frac{\partial L}{\partial y_{no}}\,x_{ni}
#   \quad\Longrightarrow\quad \frac{\partial L}{\partial W} = \delta^\top x \quad (D_{out}, D_{in}).$$
#
# Likewise $\partial y_{no}/\partial b_o = 1$ and $\partial y_{no}/\partial x_{ni} = W_{oi}$:
#
# $$\frac{\partial L}{\partial b} = \sum_n \delta_{n\cdot} \quad (D_{out},), \qquad
#   \frac{\partial L}{\partial x} = \delta\, W \quad (N, D_{in}).$$
#
# Two things to notice: the parameter gradients **sum over the batch** (every sample used
# the same W), and each gradient has **the shape of what it is the gradient of**, which
# is the quickest check that a transpose is in the right place.

# %%
import sys
from pathlib import Path

import numpy as np

# Find the repository (this runs from the repo root, from docs/tour, or in Jupyter).
ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "tinynet").is_dir()), None)
if ROOT is not None and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import tinynet

rng = np.random.default_rng(0)

# %% [markdown]
# ## The formulas in NumPy, next to tinynet's layer
# We work in float64 so that round-off is far below anything we want to see.

# %%
N, D_in, D_out = 4, 5, 3
tinynet.manual_seed(0)
layer = tinynet.Linear(D_in, D_out).double()
x = rng.standard_normal((N, D_in))
dy = rng.standard_normal((N, D_out))        # pretend this came from the layers above

y = layer(x)
dx = layer.backward(dy)

W, b = layer.weight.data, layer.bias.data
by_hand = {"dx": dy @ W, "dW": dy.T @ x, "db": dy.sum(axis=0)}
print("y matches x W^T + b:", np.allclose(y, x @ W.T + b))
for name, ours in [("dx", dx), ("dW", layer.weight.grad), ("db", layer.bias.grad)]:
    err = np.max(np.abs(ours - by_hand[name]))
    print(f"{name}: shape {ours.shape}, max |tinynet - by hand| = {err:.1e}")
    assert err < 1e-12

# %% [markdown]
# ## Checking by finite differences
# A derivation can be wrong in ways that still give the right shapes. The independent
# check is the definition of the derivative. Take the scalar $L = \sum_{no} y_{no}\,\delta_{no}$
# (its gradient with respect to $y$ is exactly $\delta$), and nudge one entry at a time:
#
# $$\frac{\partial L}{\partial W_{oi}} \approx \frac{L(W + h e_{oi}) - L(W - h e_{oi})}{2h}.$$
#
# The central difference has error $O(h^2)$; with $h = 10^{-6}$ in float64 we expect
# agreement to about $10^{-9}$ (notebook 7 shows why).

# %%
def loss_of(W_, b_, x_):
    return float(np.sum((x_ @ W_.T + b_) * dy))


def numeric_grad(f, a, h=1e-6):
    """Central differences of the scalar f() with respect to every entry of a (in place)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):      # host-side check, one entry at a time
        old = a[idx]
        a[idx] = old + h
        fp = f()
        a[idx] = old - h
        fm = f()
        a[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


W_ = W.copy()
b_ = b.copy()
x_ = x.copy()
numeric = {"dW": numeric_grad(lambda: loss_of(W_, b_, x_), W_),
           "db": numeric_grad(lambda: loss_of(W_, b_, x_), b_),
           "dx": numeric_grad(lambda: loss_of(W_, b_, x_), x_)}
for name, analytic in [("dW", layer.weight.grad), ("db", layer.bias.grad), ("dx", dx)]:
    rel = np.max(np.abs(analytic - numeric[name])) / np.max(np.abs(numeric[name]))
    print(f"{name}: relative error vs finite differences {rel:.1e}")
    assert rel < 1e-7

# %% [markdown]
# ## Gradients accumulate
# tinynet follows PyTorch: `backward` **adds** into `.grad`, so two backward passes give
# twice the gradient, and `zero_grad()` starts over. This is what lets a parameter that
# is used twice (weight sharing) collect both contributions.

# %%
layer(x)
layer.backward(dy)
assert np.allclose(layer.weight.grad, 2 * by_hand["dW"])
layer.zero_grad()
assert layer.weight.grad is None
print("two backward passes doubled .grad; zero_grad() reset it")

# %% [markdown]
# **Try it yourself:** `exercises/linear.py` has this layer without its backward;
# `tinynet grade exercises/linear.py` checks yours on odd shapes and batch 1.
