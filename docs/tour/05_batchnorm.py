# %% [markdown]
# # 5. BatchNorm's three-term backward, checked against PyTorch
#
# In training mode `BatchNorm1d` normalises each feature over the batch of $N$:
#
# $$\mu = \frac{1}{N}\sum_n x_n, \quad \sigma^2 = \frac{1}{N}\sum_n (x_n - \mu)^2, \quad
#   \hat x_n = \frac{x_n - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad y_n = \gamma \hat x_n + \beta.$$
#
# (Biased variance, divide by $N$; PyTorch keeps the unbiased $N/(N-1)$ version only for
# `running_var`.) The parameter gradients are as simple as a Linear layer's:
# $\partial L/\partial\beta = \sum_n \delta_n$, $\partial L/\partial\gamma = \sum_n \delta_n \hat x_n$.
#
# **The input gradient has three terms**, because $x_n$ reaches $L$ three ways: directly
# through $\hat x_n$, through $\mu$ and through $\sigma^2$ (both shared by the whole batch).
# Write $g_n = \gamma\,\delta_n = \partial L/\partial \hat x_n$ and $s = (\sigma^2+\epsilon)^{-1/2}$.
#
# * through $\sigma^2$: $\;\partial L/\partial\sigma^2 = -\tfrac{1}{2} s^3 \sum_m g_m (x_m - \mu)$
#   and $\partial\sigma^2/\partial x_n = \tfrac{2}{N}(x_n - \mu)$;
# * through $\mu$: $\;\partial L/\partial\mu = -s \sum_m g_m$ (the $\sigma^2$ path contributes
#   $\propto \sum_m (x_m - \mu) = 0$) and $\partial\mu/\partial x_n = 1/N$.
#
# Adding the direct term $g_n s$ and writing everything with $\hat x$:
#
# $$\frac{\partial L}{\partial x_n} = \frac{s}{N}\Big(N g_n - \sum_m g_m - \hat x_n \sum_m g_m \hat x_m\Big).$$
#
# Read it as: take $g$, remove its mean, and remove its component along $\hat x$; both are
# directions in which the normalised output cannot change, so no gradient can flow there.
# %%
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

# Find the repository (this runs from the repo root, from docs/tour, or in Jupyter).
ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "tinynet").is_dir()), None)
if ROOT is not None and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import tinynet
from tinynet.plot import save_figure

QUICK = os.environ.get("TINYNET_QUICK") == "1"
OUT = os.environ.get("TINYNET_TOUR_OUT") or tempfile.mkdtemp(prefix="tinynet-tour-")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# %%
N, C = 8, 5
x = rng.standard_normal((N, C)) * 3 + 1
dy = rng.standard_normal((N, C))
bn = tinynet.layers.BatchNorm1d(C).double()
bn.weight.data[...] = rng.uniform(0.5, 1.5, C)
bn.bias.data[...] = rng.standard_normal(C)
y = bn(x)
dx = bn.backward(dy)

eps = bn.eps
mu, var = x.mean(0), x.var(0)
s = 1 / np.sqrt(var + eps)
xhat = (x - mu) * s
g = dy * bn.weight.data
by_hand = {"dx": s / N * (N * g - g.sum(0) - xhat * (g * xhat).sum(0)),
           "gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}
ours = {"dx": dx, "gamma": bn.weight.grad, "beta": bn.bias.grad}
for k, expected in by_hand.items():
    err = np.max(np.abs(ours[k] - expected))
    print(f"{k}: max |tinynet - three-term formula| = {err:.1e}")
    assert err < 1e-12

# %% [markdown]
# The "two projections" reading, checked: per feature, the input gradient is orthogonal
# to the all-ones vector, and to $\hat x$ up to the $\epsilon$ in the denominator
# ($\sum_n \hat x_n^2 = N\sigma^2/(\sigma^2+\epsilon)$, not exactly $N$), which leaves
# exactly $s \sum_n g_n \hat x_n \cdot \epsilon/(\sigma^2+\epsilon)$.

# %%
along_xhat = (dx * xhat).sum(0)
predicted = s * (g * xhat).sum(0) * eps / (var + eps)
print("sum_n dx        :", np.abs(dx.sum(0)).max())
print("sum_n dx * xhat :", along_xhat, "\npredicted       :", predicted)
assert np.abs(dx.sum(0)).max() < 1e-12
assert np.allclose(along_xhat, predicted, rtol=1e-6, atol=1e-15)

# %% [markdown]
# ## Finite differences
# Central differences of $L = \sum y \odot \delta$ with respect to every $x_{nc}$.

# %%
def L_of(xx):
    m, v = xx.mean(0), xx.var(0)
    return float(np.sum((bn.weight.data * (xx - m) / np.sqrt(v + eps) + bn.bias.data) * dy))


h = 1e-6
numeric = np.zeros_like(x)
for idx in np.ndindex(x.shape):
    xp_, xm_ = x.copy(), x.copy()
    xp_[idx] += h
    xm_[idx] -= h
    numeric[idx] = (L_of(xp_) - L_of(xm_)) / (2 * h)
rel = np.max(np.abs(numeric - dx)) / np.max(np.abs(dx))
print(f"relative error vs finite differences: {rel:.1e}")
assert rel < 1e-7

# %% [markdown]
# ## Against PyTorch
# The same batch, weights and upstream gradient through `torch.nn.BatchNorm1d` in
# float64 with autograd. Skipped (with a note) when torch is not installed.

# %%
try:
    import torch
except ImportError:
    torch = None
    print("torch is not installed: skipping the PyTorch comparison")
if torch is not None:
    tbn = torch.nn.BatchNorm1d(C).double()
    with torch.no_grad():
        tbn.weight.copy_(torch.from_numpy(bn.weight.data))
        tbn.bias.copy_(torch.from_numpy(bn.bias.data))
    tx = torch.tensor(x, requires_grad=True)
    ty = tbn(tx)
    ty.backward(torch.from_numpy(dy))
    pairs = [("y", y, ty.detach().numpy()), ("dx", dx, tx.grad.numpy()),
             ("dgamma", bn.weight.grad, tbn.weight.grad.numpy()),
             ("dbeta", bn.bias.grad, tbn.bias.grad.numpy()),
             ("running_mean", bn.running_mean, tbn.running_mean.numpy()),
             ("running_var (unbiased)", bn.running_var, tbn.running_var.numpy())]
    for name, a, b in pairs:
        err = np.max(np.abs(np.asarray(a) - b))
        print(f"{name:24s} max |tinynet - torch| = {err:.1e}")
        assert err < 1e-12

# %% [markdown]
# ## Why the middle terms matter: a plot
# Dropping the two batch terms (treating $\mu$, $\sigma^2$ as constants) is the classic
# mistake. The plot compares, per entry, the right gradient with that wrong one: they
# differ by the mean and the $\hat x$ component, which are not small.

# %%
wrong = g * s
fig, ax = plt.subplots(figsize=(4.5, 4))
ax.scatter(dx.ravel(), wrong.ravel(), s=12)
lim = np.abs(np.concatenate([dx.ravel(), wrong.ravel()])).max() * 1.1
ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
ax.set_xlabel("three-term dL/dx (right)")
ax.set_ylabel("g * s, batch terms dropped (wrong)")
ax.set_title("BatchNorm backward")
print("wrote", save_figure(fig, os.path.join(OUT, "05_batchnorm.png")))
assert np.max(np.abs(wrong - dx)) > 0.1 * np.max(np.abs(dx))
