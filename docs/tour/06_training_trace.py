# %% [markdown]
# # 6. Training the base MLP while watching the gradients
#
# The S1 study trains the base MLP (784-512-512-10, ReLU) on Fashion-MNIST with plain SGD,
# batch 64, no shuffling, and reports that lr = 0.1 reaches 87% while **lr = 1 stays at
# 10%, chance level**. Why? SGD's update is $W \leftarrow W - \eta\, \partial L/\partial W$; a
# step is only a descent step while $\eta$ is small compared with the curvature ($\eta
# \lesssim 2/\lambda_{max}$ of the Hessian, for a quadratic). Too large a step overshoots,
# the loss jumps, the logits grow, and large negative pre-activations switch ReLUs off
# for every input: a *dead* unit has $f' = 0$ everywhere, so it never receives gradient
# again (notebook 3). With enough of them the network outputs a constant and the loss
# sits at $\log 10 \approx 2.30$.
#
# We train both learning rates with the same initial weights and batches, and at every
# step wrap the forward and backward in `tinynet.trace` to record the loss, each
# parameter's gradient norm and the fraction of exact zeros after each ReLU.
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

from tinynet import data, models

# %% [markdown]
# ## Data
# Fashion-MNIST from the local copy (no download here). If it is not installed, a
# synthetic stand-in (random class prototypes plus noise) keeps the notebook running;
# the message says which one was used.

# %%
try:
    images, labels = data.load("fashion-mnist", "train", download=False)
    source = "Fashion-MNIST"
except tinynet.DataError as e:
    print("Fashion-MNIST not found, using synthetic data:", str(e).splitlines()[0])
    protos = rng.integers(0, 256, (10, 28, 28))
    labels = rng.integers(0, 10, 60000)
    noise = rng.integers(-60, 61, (60000, 28, 28))
    images = np.clip(protos[labels] + noise, 0, 255).astype(np.uint8)
    source = "synthetic"
BATCH = 64
STEPS = 100 if QUICK else len(labels) // BATCH          # one epoch when not in quick mode
print(f"{source}: {len(labels)} images; {STEPS} steps of batch {BATCH} per run")


# %%
def train(lr):
    tinynet.manual_seed(0)                       # same initial weights for every lr
    model = models.base_mlp()
    opt = tinynet.SGD(model.parameters(), lr=lr)
    loss_fn = tinynet.CrossEntropyLoss()
    log = {"loss": [], "grad": [], "dead": []}
    for step in range(STEPS):
        sl = slice(step * BATCH, (step + 1) * BATCH)          # no shuffling, as S1
        x, t = data.to_float(images[sl]), labels[sl]
        opt.zero_grad()
        with tinynet.trace(model) as tr:
            loss = loss_fn(model(x), t)
            model.backward(loss_fn.backward(), input_grad=False)
        log["loss"].append(loss)
        log["grad"].append(tr.param_grad_norms())
        log["dead"].append([r["zeros"] for r in tr.rows("forward") if r["type"] == "ReLU"])
        if not np.isfinite(loss):
            print(f"lr {lr}: loss became {loss} at step {step}; stopping")
            break
        opt.step()
    return log, tr


runs = {}
for lr in (0.1, 1.0):
    runs[lr], last_trace = train(lr)
    lo = runs[lr]["loss"]
    print(f"lr {lr}: loss first {lo[0]:.3f}, max {np.nanmax(lo):.3f}, "
          f"mean of the last 20 steps {np.mean(lo[-20:]):.3f}")

# %% [markdown]
# The trace of the last lr = 1 step, as `tinynet trace` prints it: look at the ReLU rows'
# zeros column and the gradient norms in the backward rows.

# %%
print(last_trace.table())

# %% [markdown]
# ## The picture: loss, first-layer gradient norm, dead ReLUs

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for lr, log in runs.items():
    steps = np.arange(len(log["loss"]))
    axes[0].semilogy(steps, log["loss"], lw=0.8, label=f"lr {lr}")
    axes[1].semilogy(steps, [g["1.weight"] for g in log["grad"]], lw=0.8, label=f"lr {lr}")
    axes[2].plot(steps, [100 * d[-1] for d in log["dead"]], lw=0.8, label=f"lr {lr}")
axes[0].axhline(np.log(10), color="k", ls=":", lw=0.8)
axes[0].set_title("training loss, log scale (dotted: log 10, chance)")
axes[1].set_title("||dL/dW|| of the first Linear")
axes[2].set_title("% exact zeros after the last ReLU")
for ax in axes:
    ax.set_xlabel("step")
    ax.legend()
print("wrote", save_figure(fig, os.path.join(OUT, "06_lr_divergence.png")))
print("wrote", last_trace.plot(os.path.join(OUT, "06_trace_lr1.png"),
                              title="base MLP, lr 1, last step"))

# %% [markdown]
# ## What the numbers say
# lr = 0.1 makes steady progress. lr = 1 jumps far above the starting loss, then crawls
# back near $\log 10$ with most ReLU outputs exactly zero; after the same number of steps
# its loss is still several times larger. (S1 trains 10 epochs, at the end of which the
# report's lr = 1 network predicts one class for everything: 10% accuracy.)

# %%
good, bad = runs[0.1], runs[1.0]
late_good, late_bad = np.mean(good["loss"][-20:]), np.mean(bad["loss"][-20:])
print(f"mean loss over the last 20 steps: lr 0.1 {late_good:.3f}, lr 1 {late_bad:.3f}")
assert late_good < 1.5, "lr 0.1 should be learning"
assert np.nanmax(bad["loss"]) > 1.5 * bad["loss"][0] or not np.isfinite(bad["loss"][-1]), \
    "lr 1 should overshoot"
assert not late_bad < 2 * late_good, "lr 1 should be far behind lr 0.1"
dead_good, dead_bad = np.mean(good["dead"][-20:]), np.mean(bad["dead"][-20:])
print(f"ReLU zeros over the last 20 steps: lr 0.1 {100 * dead_good:.0f}%, lr 1 {100 * dead_bad:.0f}%")
assert dead_bad > dead_good
