"""Equivariance error: how far fn commutes with the rescale operator.

  Delta(s) = mean_images ||fn(L_s x) - L'_s fn(x)||^2 / ||L'_s fn(x)||^2

(reduction='mean', the default). reduction='pooled' takes both norms over the
whole batch instead (a ratio of sums): robust to an image whose reference
features are all but zero (e.g. dead units of an untrained net after a coarse
rescale), which makes its own ratio, and so the mean, explode.

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

REDUCTIONS = ('mean', 'pooled')


def equivariance_terms(fn: Callable[[jax.Array], jax.Array], x: jax.Array, factor,
                       *, out_transform=None) -> tuple[jax.Array, jax.Array]:
  """Per image: (||fn(L_s x) - L'_s fn(x)||^2, ||L'_s fn(x)||^2), two [B] arrays.

  Concatenate over chunks of a data set, then `reduce_terms`. Arguments as
  for `equivariance_error`.
  """
  y = fn(x)
  lhs = fn(transforms.rescale(x, factor))
  if out_transform is None:
    out_transform = transforms.default_out_transform(y)
  a, b = out_transform(lhs, y, factor)
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  axes = tuple(range(1, b.ndim))
  return jnp.sum((a - b) ** 2, axis=axes), jnp.sum(b ** 2, axis=axes)


def _ratio(num, den):
  """num / den, NaN where den == 0: the relative error of an all-zero reference
  (e.g. a 2x2 feature map rescaled by 1/3) is undefined, not 1e30."""
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)


def _check_reduction(reduction: str) -> None:
  if reduction not in REDUCTIONS:
    raise ValueError(f'reduction must be one of {REDUCTIONS}; got {reduction!r}.')


def reduce_terms(num, den, reduction: str = 'mean'):
  """Delta from per-image terms: mean of ratios, or ratio of sums ('pooled')."""
  _check_reduction(reduction)
  if reduction == 'mean':
    return jnp.mean(_ratio(num, den))
  return _ratio(jnp.sum(num), jnp.sum(den))


def equivariance_error(fn: Callable[[jax.Array], jax.Array], x: jax.Array, factor,
                       *, out_transform=None, reduction: str = 'mean') -> jax.Array:
  """Normalised equivariance error of `fn` under rescaling by `factor`.

  Args:
    fn: batched function of `x` (a model's features or logits, a layer).
    x: inputs [B, H, W, C] (or [B, S, H, W, C] for scale-space layers).
    factor: scale factor s > 0.
    out_transform: callable (lhs, y, factor) -> (lhs', L'_s y) where
      lhs = fn(L_s x) and y = fn(x). Default: `transforms.identity_transform`
      for [B, D] outputs and `transforms.spatial_transform` for [B, H, W, C].
    reduction: 'mean' (of per-image ratios) or 'pooled' (ratio of batch sums).

  Returns:
    Scalar float32: the relative squared error; NaN (undefined) when the
    reference L'_s fn(x) of an image ('mean') or of the batch ('pooled') is
    identically zero.
  """
  _check_reduction(reduction)  # before the (costly) forward passes
  num, den = equivariance_terms(fn, x, factor, out_transform=out_transform)
  return reduce_terms(num, den, reduction)


def equivariance_curve(fn, x, factors: Iterable[float], *, out_transform=None
                       ) -> np.ndarray:
  """Delta(s) for each factor: a float64 numpy array, one entry per factor."""
  return np.array([float(equivariance_error(fn, x, s, out_transform=out_transform))
                   for s in factors])
