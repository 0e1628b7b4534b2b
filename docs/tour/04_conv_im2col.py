# %% [markdown]
# # 4. Conv2d by im2col, and col2im as its adjoint
#
# A convolution layer (a cross-correlation, as in every framework) computes
#
# $$y_{n,o,a,b} = \sum_{c,i,j} \tilde x_{n,c,\,aS+i,\,bS+j}\, W_{o,c,i,j} + b_o,$$
#
# with $\tilde x$ the zero-padded input, $x$ of shape `(N, C, H, W)`, $W$ of shape
# `(O, C, KH, KW)` and $y$ of shape `(N, O, OH, OW)`, $OH = (H + 2P - KH)/S + 1$.
#
# **im2col.** Copy every receptive field (a `C x KH x KW` patch) into one row of a matrix
# `cols` of shape `(N*OH*OW, C*KH*KW)`. Then the whole convolution is one matrix product
# with the weights flattened to `W_mat` `(O, C*KH*KW)`:
#
# $$Y_{mat} = \mathrm{cols}\; W_{mat}^\top + b \qquad (N\,OH\,OW,\; O).$$
#
# **Backward** is then the Linear layer's backward (notebook 1) on these matrices:
# $dW_{mat} = dY_{mat}^\top\,\mathrm{cols}$, $db = \sum_{rows} dY_{mat}$, and
# $d\mathrm{cols} = dY_{mat}\, W_{mat}$. What remains is to bring $d\mathrm{cols}$ back to
# the image: **col2im**. Since im2col copies each input pixel into several rows (every
# window that covers it), its adjoint *adds* the gradients of all copies back to the pixel.
# "Adjoint" is exact: for every $x$ and $G$,
#
# $$\langle \mathrm{im2col}(x),\, G\rangle = \langle x,\, \mathrm{col2im}(G)\rangle,$$
#
# which is precisely the statement that col2im computes $\partial L/\partial x$ from
# $\partial L/\partial\,\mathrm{cols} = G$.
#
# tinynet's own layer computes exactly this: read `conv2d_forward` and `conv2d_backward`
# in `tinynet/functional/conv.py` (the reference kernels; `tinynet.reference_kernels()`
# runs a model on them), with `im2col`, `col2im` and the loop definition beside them.
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
def im2col(x, kh, kw, stride=1, pad=0):
    """x (N, C, H, W) -> cols (N*OH*OW, C*KH*KW); row (n, a, b) is the patch at (a, b)."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):                  # one strided copy per kernel offset
        for j in range(kw):
            cols[:, :, i, j] = xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * kh * kw)


def col2im(dcols, x_shape, kh, kw, stride=1, pad=0):
    """The adjoint: add each row entry back onto the pixel it was copied from."""
    n, c, h, w = x_shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    d = dcols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    dxpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += d[:, :, i, j]
    return dxpad[:, :, pad:pad + h, pad:pad + w]


# %% [markdown]
# ## A picture of the column matrix
# A 4x4 single-channel image whose pixels are numbered 0..15, a 2x2 kernel, stride 1:
# 9 windows, so 9 rows of 4 values. Pixel 5 (inside) appears in 4 rows; corner pixel 0
# in one. That count is what col2im adds up.

# %%
img = np.arange(16, dtype=float).reshape(1, 1, 4, 4)
cols = im2col(img, 2, 2)
print(cols.astype(int))
fig, axes = plt.subplots(1, 2, figsize=(8, 4), gridspec_kw={"width_ratios": [1, 1]})
axes[0].imshow(img[0, 0], cmap="viridis")
axes[0].set_title("image (pixel numbers)")
for (r, c_), v in np.ndenumerate(img[0, 0]):
    axes[0].text(c_, r, int(v), ha="center", va="center", color="w")
axes[1].imshow(cols, cmap="viridis", aspect="auto")
axes[1].set_title("im2col: one row per window")
axes[1].set_xlabel("(i, j) position in the 2x2 window")
axes[1].set_ylabel("window (a, b)")
for (r, c_), v in np.ndenumerate(cols):
    axes[1].text(c_, r, int(v), ha="center", va="center", color="w")
print("wrote", save_figure(fig, os.path.join(OUT, "04_im2col.png")))

copies = col2im(np.ones_like(cols), img.shape, 2, 2)[0, 0]
print("how many windows cover each pixel (col2im of ones):\n", copies.astype(int))
assert copies[0, 0] == 1 and copies[1, 1] == 4

# %% [markdown]
# ## col2im is the adjoint of im2col
# Random $x$ and $G$, stride 2 and padding 1 included: the two inner products agree to
# round-off.

# %%
for (shape, k, s, p) in [((2, 3, 7, 7), 3, 1, 0), ((2, 3, 7, 6), 3, 2, 1), ((1, 2, 5, 5), 2, 1, 1)]:
    x = rng.standard_normal(shape)
    c = im2col(x, k, k, s, p)
    G = rng.standard_normal(c.shape)
    lhs, rhs = np.vdot(c, G), np.vdot(x, col2im(G, x.shape, k, k, s, p))
    print(f"x {shape}, k={k} s={s} p={p}: <im2col x, G> = {lhs:.12f}, <x, col2im G> = {rhs:.12f}")
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))

# %% [markdown]
# ## The whole layer, against tinynet's `Conv2d`
# Forward as one matrix product, backward as the Linear backward plus col2im; tinynet's
# layer (its own im2col with a channels-last column order) must give the same numbers.

# %%
N, C, H, W_, O, K, S, P = 2, 3, 7, 7, 4, 3, 2, 1
tinynet.manual_seed(0)
conv = tinynet.layers.Conv2d(C, O, K, stride=S, padding=P).double()
x = rng.standard_normal((N, C, H, W_))
y_layer = conv(x)
dy = rng.standard_normal(y_layer.shape)
dx_layer = conv.backward(dy)

W = conv.weight.data
Wmat = W.reshape(O, -1)
cols = im2col(x, K, K, S, P)
OH, OW = y_layer.shape[2:]
y = (cols @ Wmat.T + conv.bias.data).reshape(N, OH, OW, O).transpose(0, 3, 1, 2)
dY = dy.transpose(0, 2, 3, 1).reshape(-1, O)
dW = (dY.T @ cols).reshape(W.shape)
db = dY.sum(axis=0)
dx = col2im(dY @ Wmat, x.shape, K, K, S, P)
for name, a, b in [("y", y, y_layer), ("dW", dW, conv.weight.grad), ("db", db, conv.bias.grad),
                   ("dx", dx, dx_layer)]:
    err = np.max(np.abs(a - b))
    print(f"{name}: max |im2col by hand - tinynet| = {err:.1e}")
    assert err < 1e-12
