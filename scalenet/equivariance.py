"""Equivariance error: how far fn commutes with the rescale operator.

  Delta(s) = ||fn(L_s x) - L'_s fn(x)||^2 / ||L'_s fn(x)||^2

with both norms taken over the whole batch of images (a ratio of sums, not a
mean of per-image ratios: an image whose reference features are all but zero,
e.g. dead ReLUs after a coarse rescale, would otherwise dominate the mean).

One definition for every model and layer; L'_s is the output transform
(identity for vectors = invariance error, spatial rescale for feature maps,
rescale + level shift for scale-space tensors).

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks",
  ICLR 2020 (the normalised equivariance error).
"""

from __future__ import annotations

from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from scalenet import transforms

# Floor on ||L'_s fn(x)||^2, so an all-zero reference gives a finite error.
_TINY = 1e-30


def equivariance_terms(fn: Callable[[jax.Array], jax.Array], x: jax.Array, factor,
                       *, out_transform=None) -> tuple[jax.Array, jax.Array]:
  """(||fn(L_s x) - L'_s fn(x)||^2, ||L'_s fn(x)||^2) summed over the batch.

  Summable over chunks of a data set; Delta(s) is their ratio. Arguments as
  for `equivariance_error`.
  """
  y = fn(x)
  lhs = fn(transforms.rescale(x, factor))
  if out_transform is None:
    out_transform = transforms.default_out_transform(y)
  a, b = out_transform(lhs, y, factor)
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  return jnp.sum((a - b) ** 2), jnp.sum(b ** 2)


def equivariance_error(fn: Callable[[jax.Array], jax.Array], x: jax.Array, factor,
                       *, out_transform=None) -> jax.Array:
  """Normalised equivariance error of `fn` under rescaling by `factor`.

  Args:
    fn: batched function of `x` (a model's features or logits, a layer).
    x: inputs [B, H, W, C] (or [B, S, H, W, C] for scale-space layers).
    factor: scale factor s > 0.
    out_transform: callable (lhs, y, factor) -> (lhs', L'_s y) where
      lhs = fn(L_s x) and y = fn(x). Default: `transforms.identity_transform`
      for [B, D] outputs and `transforms.spatial_transform` for [B, H, W, C].

  Returns:
    Scalar float32: the relative squared error over the batch.
  """
  num, den = equivariance_terms(fn, x, factor, out_transform=out_transform)
  return num / jnp.maximum(den, _TINY)


def equivariance_curve(fn, x, factors: Iterable[float], *, out_transform=None
                       ) -> np.ndarray:
  """Delta(s) for each factor: a float64 numpy array, one entry per factor."""
  return np.array([float(equivariance_error(fn, x, s, out_transform=out_transform))
                   for s in factors])
