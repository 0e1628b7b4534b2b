# %% [markdown]
# # 2. Softmax cross-entropy, and why its gradient is `(p - y) / N`
#
# A classifier outputs logits $z \in \mathbb{R}^{N \times C}$. Softmax turns each row into
# probabilities and cross-entropy scores the probability of the true class $t_n$:
#
# $$p_{nc} = \frac{e^{z_{nc}}}{\sum_k e^{z_{nk}}}, \qquad
#   L = -\frac{1}{N} \sum_n \log p_{n t_n}.$$
#
# **One sample first.** Drop $n$. $\log p_t = z_t - \log \sum_k e^{z_k}$, so
#
# $$\frac{\partial (-\log p_t)}{\partial z_c} = -[c = t] + \frac{e^{z_c}}{\sum_k e^{z_k}}
#   = p_c - y_c,$$
#
# with $y$ the one-hot vector of $t$. **The long way** gives the same: softmax's Jacobian is
# $\partial p_i / \partial z_c = p_i([i = c] - p_c)$, i.e. $J = \mathrm{diag}(p) - p p^\top$, and
# $\partial(-\log p_t)/\partial p_i = -[i = t]/p_t$; multiplying, only $i = t$ survives:
# $-\frac{1}{p_t} p_t([t = c] - p_c) = p_c - [c = t]$. The $1/p_t$ cancels, which is why the
# fused gradient is numerically tame even when $p_t$ is tiny.
#
# **The batch.** $L$ is the *mean* over $N$ samples, so each row is divided by $N$:
#
# $$\frac{\partial L}{\partial z} = \frac{p - y}{N}.$$
#
# Forgetting the $1/N$ makes the effective learning rate $N$ times larger.
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

# %% [markdown]
# ## Three ways to the same gradient
# tinynet's `CrossEntropyLoss` (fused formula), the long way through the softmax Jacobian,
# and finite differences of the loss.

# %%
N, C = 5, 4
z = rng.standard_normal((N, C)) * 2
t = rng.integers(0, C, N)
loss_fn = tinynet.CrossEntropyLoss()
loss = loss_fn(z, t)
fused = loss_fn.backward()

p = np.exp(z - z.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
y = np.eye(C)[t]
long_way = np.zeros_like(z)
for n in range(N):                       # one Jacobian per sample, for illustration
    J = np.diag(p[n]) - np.outer(p[n], p[n])          # dp_i/dz_c
    dL_dp = -y[n] / p[n] / N                           # d(-log p_t / N)/dp_i
    long_way[n] = J.T @ dL_dp


def ce(zz):
    m = zz.max(axis=1, keepdims=True)
    logp = zz - m - np.log(np.exp(zz - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(N), t].mean()


numeric = np.zeros_like(z)
h = 1e-6
for idx in np.ndindex(z.shape):
    zp, zm = z.copy(), z.copy()
    zp[idx] += h
    zm[idx] -= h
    numeric[idx] = (ce(zp) - ce(zm)) / (2 * h)

print(f"loss {loss:.6f} (by hand {ce(z):.6f})")
print("max |fused - Jacobian way|     =", np.abs(fused - long_way).max())
print("max |fused - finite differences| =", np.abs(fused - numeric).max())
assert np.allclose(fused, (p - y) / N, atol=1e-15)
assert np.allclose(fused, long_way, atol=1e-14)
assert np.abs(fused - numeric).max() < 1e-8

# %% [markdown]
# ## What the gradient looks like
# Each row of $(p - y)/N$ sums to zero: the push up on the true class equals the total push
# down on the others. A confident correct prediction ($p_t \to 1$) gives almost no
# gradient; a confident wrong one gives almost $-1/N$ on the true class.

# %%
print("row sums:", np.round(fused.sum(axis=1), 15))
assert np.allclose(fused.sum(axis=1), 0, atol=1e-15)

margins = np.linspace(-6, 6, 121)
grad_true = []
for m in margins:              # logits (m, 0, 0, 0): class 0 is the target
    zz = np.array([[m, 0.0, 0.0, 0.0]])
    loss_fn(zz, np.array([0]))
    grad_true.append(loss_fn.backward()[0, 0])
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(margins, grad_true)
ax.set_xlabel("logit of the true class (others 0)")
ax.set_ylabel("dL/dz_true = p_true - 1")
ax.set_title("cross-entropy's gradient on the true class")
print("wrote", save_figure(fig, os.path.join(OUT, "02_ce_gradient.png")))

# %% [markdown]
# ## Stability: never compute `log(softmax(z))` naively
# With logits around 1000, `exp` overflows. Subtracting the row max first
# (log-sum-exp) changes nothing mathematically and keeps everything finite.

# %%
big = np.array([[1000.0, 0.0, -1000.0]])
print("loss on huge logits:", loss_fn(big, np.array([1])))
assert np.isfinite(loss_fn.backward()).all()
