# %% [markdown]
# # 3. ReLU, tanh and sigmoid: local derivatives and saturation
#
# An element-wise activation $y = f(x)$ has a diagonal Jacobian, so its backward is one
# multiplication: $\partial L/\partial x = \partial L/\partial y \odot f'(x)$. The three classics:
#
# | f | f(x) | f'(x), written with the output y |
# |---|---|---|
# | ReLU | $\max(x, 0)$ | $[x > 0]$ (0 at $x = 0$, as PyTorch) |
# | tanh | $\tanh x$ | $1 - y^2$ |
# | sigmoid | $\sigma(x) = 1/(1 + e^{-x})$ | $y(1 - y)$ |
#
# Writing $f'$ with $y$ means the layer only caches its output. For the sigmoid:
# $\sigma'(x) = e^{-x}/(1 + e^{-x})^2 = \sigma(x)\,(1 - \sigma(x))$.
#
# **Saturation.** $\sigma' \le 1/4$ (at $x = 0$) and $\tanh' \le 1$, both $\to 0$ as $|x|$
# grows. A gradient crossing $k$ saturated layers is multiplied by $k$ small factors:
# it *vanishes*. ReLU passes gradient unchanged where $x > 0$ and kills it where $x < 0$
# (a "dead" unit if that holds for every input).
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
# ## Each layer's backward against its formula and against finite differences

# %%
x = np.linspace(-6, 6, 241)
x = x[np.abs(x) > 1e-3]                 # keep away from ReLU's kink at 0
layers = {"ReLU": tinynet.ReLU(), "Tanh": tinynet.Tanh(), "Sigmoid": tinynet.Sigmoid()}
formula = {"ReLU": lambda x, y: (x > 0) * 1.0, "Tanh": lambda x, y: 1 - y**2,
           "Sigmoid": lambda x, y: y * (1 - y)}
derivs = {}
h = 1e-6
for name, layer in layers.items():
    y = layer(x)
    local = layer.backward(np.ones_like(x))          # dy = 1 gives f'(x) itself
    numeric = (layer(x + h) - layer(x - h)) / (2 * h)
    assert np.allclose(local, formula[name](x, y), atol=1e-15)
    assert np.max(np.abs(local - numeric)) < 1e-8
    derivs[name] = (layer(x), local)
    print(f"{name:8s} max f'(x) = {local.max():.4f}; matches formula and finite differences")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name, (y, d) in derivs.items():
    axes[0].plot(x, y, label=name)
    axes[1].plot(x, d, label=name)
axes[0].set_title("f(x)")
axes[1].set_title("f'(x): the factor backward multiplies by")
for ax in axes:
    ax.set_xlabel("x")
    ax.legend()
print("wrote", save_figure(fig, os.path.join(OUT, "03_activations.png")))

# %% [markdown]
# ## Vanishing gradients through a deep stack
# A stack of `k` blocks `Linear(64, 64)` + activation and a random batch. We trace one
# backward pass with `tinynet.trace` and read off $\|\partial L/\partial x\|$ at every
# Linear. With PyTorch's default init ($W \sim U(\pm 1/\sqrt{D_{in}})$, variance
# $1/(3 D_{in})$) every block shrinks the gradient by a roughly constant factor, the
# sigmoid most (its $f' \le 1/4$). He initialisation (variance $2/D_{in}$, `kaiming_normal_`)
# is chosen exactly so that a ReLU block keeps $E\|\partial L/\partial x\|^2$ constant:
# half the units are off, and the factor 2 makes up for it.

# %%
depth = 10
norms = {}
for act, he in (("sigmoid", False), ("tanh", False), ("relu", False), ("relu", True)):
    tinynet.manual_seed(0)
    blocks = []
    for _ in range(depth):
        blocks += [tinynet.Linear(64, 64), tinynet.models.activation(act)]
        if he:
            tinynet.init.kaiming_normal_(blocks[-2].weight, nonlinearity="relu")
            tinynet.init.zeros_(blocks[-2].bias)
    act = act + (" (He init)" if he else "")
    model = tinynet.Sequential(*blocks, tinynet.Linear(64, 10)).double()
    xb = rng.standard_normal((32, 64))
    tb = rng.integers(0, 10, 32)
    loss_fn = tinynet.CrossEntropyLoss()
    with tinynet.trace(model) as tr:
        loss_fn(model(xb), tb)
        model.backward(loss_fn.backward())
    linear_rows = [r for r in tr.rows("backward") if r["type"] == "Linear"]
    norms[act] = [r["norm"] for r in linear_rows][::-1]     # first layer first
    print(f"{act:16s} ||dL/dx|| at the first layer / at the last: "
          f"{norms[act][0] / norms[act][-1]:.2e}")
assert norms["sigmoid"][0] / norms["sigmoid"][-1] < 1e-3     # vanished
assert norms["relu (He init)"][0] / norms["relu (He init)"][-1] > 0.1   # did not
assert norms["sigmoid"][0] / norms["sigmoid"][-1] < norms["relu"][0] / norms["relu"][-1]

fig, ax = plt.subplots(figsize=(6, 3.5))
for act, v in norms.items():
    ax.semilogy(range(1, len(v) + 1), v, "o-", label=act)
ax.set_xlabel("Linear layer (1 = closest to the input)")
ax.set_ylabel("||dL/dx|| leaving the layer")
ax.set_title(f"gradient norm through {depth} blocks")
ax.legend()
print("wrote", save_figure(fig, os.path.join(OUT, "03_vanishing.png")))
