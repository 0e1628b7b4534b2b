# %% [markdown]
# # 7. Gradient checking: the error-vs-epsilon V curve
#
# Every backward in tinynet is checked against the central difference
#
# $$D_\epsilon = \frac{L(w + \epsilon v) - L(w - \epsilon v)}{2\epsilon}
#   = v\cdot\nabla L + \frac{\epsilon^2}{6} L'''_v + O(\epsilon^4).$$
#
# Two errors pull in opposite directions:
#
# * **truncation**, $\approx \epsilon^2 |L'''|/6$, shrinks as $\epsilon \to 0$;
# * **round-off**: $L$ is computed with relative error about the unit round-off $u$
#   ($1.1\times10^{-16}$ in float64, $6.0\times10^{-8}$ in float32), and the difference of two
#   nearly equal values divided by $2\epsilon$ turns that into $\approx u |L| / \epsilon$, which
#   *grows* as $\epsilon \to 0$.
#
# Their sum is smallest where the two meet, $\epsilon^\* \sim (3u)^{1/3}$: about $10^{-5}$ in
# float64 and $10^{-2}$ to $10^{-3}$ in float32, with a best error of order $u^{2/3}$: about
# $10^{-10}$ and $10^{-5}$. On a log-log plot the error traces a **V**: slope $-1$ on the
# left (round-off), slope $+2$ on the right (truncation). This is why gradient checks run
# in float64, and why a float32 check cannot promise more than about 4 digits.
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
# ## The experiment
# A small model, Linear(10, 8), Tanh, Linear(8, 3), cross-entropy on a batch of 16. The
# exact directional derivative $v\cdot\nabla L$ along a random unit direction $v$ over the
# first weight comes from tinynet's backward in float64. Then the central difference is
# computed with the forward in float32 and in float64 for $\epsilon$ from $10^{-12}$ to $1$.

# %%
tinynet.manual_seed(0)
model64 = tinynet.Sequential(tinynet.Linear(10, 8), tinynet.Tanh(), tinynet.Linear(8, 3)).double()
x = rng.standard_normal((16, 10))
t = rng.integers(0, 3, 16)
loss_fn = tinynet.CrossEntropyLoss()
loss_fn(model64(x), t)
model64.backward(loss_fn.backward())
W0 = model64[0].weight.data.copy()
v = rng.standard_normal(W0.shape)
v /= np.linalg.norm(v)
exact = float(np.sum(model64[0].weight.grad * v))
print(f"exact directional derivative v . dL/dW = {exact:.15f}")


def loss_at(model, W, xx):
    model[0].weight.data = W
    return loss_fn(model(xx), t)


eps_grid = np.logspace(-12, 0, 49)
errors = {}
for dtype in ("float64", "float32"):
    model = tinynet.Sequential(tinynet.Linear(10, 8), tinynet.Tanh(), tinynet.Linear(8, 3))
    model.load_state_dict(model64.state_dict())
    model = model.double() if dtype == "float64" else model.float()
    xx = x.astype(dtype)
    W = W0.astype(dtype)
    errs = []
    for eps in eps_grid:
        step_v = np.dtype(dtype).type(eps) * v.astype(dtype)
        Wp, Wm = W + step_v, W - step_v
        # divide by the step actually taken after rounding, (Wp - Wm) . v, not 2 eps
        step = float(np.sum((Wp.astype("float64") - Wm.astype("float64")) * v))
        d = (loss_at(model, Wp, xx) - loss_at(model, Wm, xx)) / step if step else np.nan
        errs.append(abs(d - exact) / abs(exact) if np.isfinite(d) else np.nan)
    errors[dtype] = np.array(errs)
    best = np.nanargmin(errors[dtype])
    print(f"{dtype}: best relative error {errors[dtype][best]:.1e} at eps = {eps_grid[best]:.0e}")
    print("   eps:  " + " ".join(f"{e:7.0e}" for e in eps_grid[::4]))
    print("   error:" + " ".join(f"{e:7.1e}" for e in errors[dtype][::4]))

# %% [markdown]
# ## The V curve
# The dashed lines are the two error models, $u/\epsilon$ (times $|L|/|v\cdot\nabla L|$) and
# $\epsilon^2$ scaled to the float64 curve's right branch.

# %%
L0 = loss_at(model64, W0, x)
fig, ax = plt.subplots(figsize=(6.5, 4.5))
for dtype, style, color in (("float64", "o-", "C0"), ("float32", "s-", "C2")):
    e = np.where(errors[dtype] > 0, errors[dtype], np.nan)
    ax.loglog(eps_grid, e, style, ms=3, color=color, label=dtype)
    u = np.finfo(dtype).eps / 2
    ax.loglog(eps_grid, u * abs(L0) / abs(exact) / eps_grid, "--", lw=0.8, color=color,
              label=f"round-off u|L|/eps ({dtype})")
right = eps_grid > 1e-3
c = np.nanmedian(errors["float64"][right] / eps_grid[right] ** 2)
ax.loglog(eps_grid, c * eps_grid ** 2, "k:", lw=0.8, label="truncation ~ eps^2")
ax.set_ylim(1e-13, 10)
ax.set_xlabel("eps")
ax.set_ylabel("relative error of the central difference")
ax.set_title("gradient check: error vs eps")
ax.legend(fontsize=7)
print("wrote", save_figure(fig, os.path.join(OUT, "07_v_curve.png")))

# %% [markdown]
# ## What to take away
# The checks below hold for this model and are what the curve shows: float64 reaches
# about $10^{-10}$ near $\epsilon = 10^{-5}$; float32 cannot do better than about
# $10^{-4}$, near $\epsilon = 10^{-2}$; and both get worse on either side of their best
# $\epsilon$ (the V).

# %%
for dtype, (lo, hi), cap in (("float64", (1e-7, 1e-3), 1e-8), ("float32", (1e-4, 1e-1), 1e-2)):
    e = errors[dtype]
    best = np.nanargmin(e)
    assert lo <= eps_grid[best] <= hi, (dtype, eps_grid[best])
    assert e[best] < cap, (dtype, e[best])
    finite = e[np.isfinite(e)]           # (float32: tiny eps steps round away to nothing)
    assert finite[0] > 100 * e[best] and finite[-1] > 100 * e[best], dtype   # both arms
assert np.nanmin(errors["float32"]) > 100 * np.nanmin(errors["float64"])

# %% [markdown]
# ## In practice: `tinynet.gradcheck`
# The library check uses these lessons (float64, eps near the bottom of the V, element,
# direction and eps-free Taylor tests). It needs no code from us:

# %%
try:
    from tinynet import gradcheck
except ImportError:
    gradcheck = None
    print("tinynet.gradcheck is not in this checkout")
if gradcheck is not None:
    report = gradcheck.check(model64, x, target=t, loss_fn=tinynet.CrossEntropyLoss())
    print(report)
    assert report.ok
