"""Exercise: softmax cross-entropy's gradient.   Grade it: tinynet grade exercises/softmax_cross_entropy.py

Forward (given): p = softmax(z) row by row, L = -(1/N) sum_n log p[n, t_n], for logits
z (N, C) and integer targets t (N,). A loss ends the chain: backward takes no dy and
returns dL/dz, shape (N, C).
Derive dL/dz[n, c] for one sample (differentiate log p_t = z_t - log sum_k exp z_k),
then remember the mean over the batch.
"""

# ruff: noqa: RUF059  (backward's first lines unpack what you will need)

from tinynet import get_array_module


class SoftmaxCrossEntropy:
    def __init__(self):
        self._cache = None

    def __call__(self, logits, target):
        xp = get_array_module(logits)
        n = logits.shape[0]
        z = logits - logits.max(axis=1, keepdims=True)       # log-sum-exp trick
        logp = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
        self._cache = (xp.exp(logp), target)                # p (N, C), t (N,)
        return float(-logp[xp.arange(n), target].sum() / n)

    def backward(self):
        p, t = self._cache
        # TODO: return dL/dlogits, shape (N, C). Do not modify p in place (copy it).
        raise NotImplementedError("SoftmaxCrossEntropy.backward: write it, then run tinynet grade")
