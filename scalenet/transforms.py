"""The rescale operator L_s and the output transforms L'_s it induces.

`rescale` scales an image about its centre by `factor` (< 1 shrinks) and keeps
its size: zeros fill in when shrinking, the border is cropped when enlarging.
Bilinear rescaling is separable, so it is two small matrix products
(Ay @ X @ Ax^T) with tent weights; this is exact zero-padded bilinear
interpolation, differentiable in x and in factor, and jittable with a traced
factor.

Output transforms take (lhs, y, factor), where lhs = fn(L_s x) and y = fn(x),
and return the pair that `equivariance_error` compares: (lhs', L'_s y).
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

from scalenet import _checks

METHODS = ('bilinear', 'nearest')


def check_factor(factor) -> None:
  """Raises ValueError for a concrete factor that is not finite and > 0."""
  try:
    value = float(factor)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return  # Traced: cannot be checked here.
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f'scale factor must be finite and > 0; got {factor!r}.')


def interpolation_matrix(size: int, factor, *, method: str = 'bilinear',
                         antialias: bool = False, dtype=jnp.float32) -> jax.Array:
  """[size, size] matrix A with (A @ v)[p] = v sampled at c + (p - c) / factor.

  c = (size - 1) / 2 is the centre. Samples outside the signal are zero.
  With antialias and factor < 1 the bilinear tent is widened by 1 / factor
  (as PIL's bilinear resize does), so shrinking averages instead of aliasing.
  """
  if method not in METHODS:
    raise ValueError(f'unknown rescale method {method!r}; choose from {METHODS}.')
  factor = jnp.asarray(factor, jnp.float32)
  c = (size - 1) / 2.0
  p = jnp.arange(size, dtype=jnp.float32)
  src = c + (p - c) / factor
  dist = src[:, None] - p[None, :]
  if method == 'nearest':
    weights = (jnp.floor(src + 0.5)[:, None] == p[None, :]).astype(jnp.float32)
  elif antialias:
    f = jnp.minimum(factor, 1.0)
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(dist) * f) * f
  else:
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(dist))
  return weights.astype(dtype)


def rescale(x: jax.Array, factor, *, method: str = 'bilinear',
            antialias: bool = False) -> jax.Array:
  """The scale operator L_s: rescale about the image centre, same size.

  Args:
    x: [B, H, W, C] images, or [B, S, H, W, C] scale-space tensors (each
      level rescaled spatially).
    factor: scale factor s > 0 (< 1 shrinks, > 1 enlarges); may be traced.
    method: 'bilinear' (default) or 'nearest'.
    antialias: widen the bilinear kernel when shrinking.

  Returns:
    Array of the same shape and dtype as `x`.

  Raises:
    ValueError: wrong rank, a factor <= 0 or not finite, unknown method.
  """
  _checks.check_rank(x, (4, 5), 'rescale input', '[B, H, W, C] or [B, S, H, W, C]')
  _checks.check_floating(x, 'rescale input')
  check_factor(factor)
  h, w = x.shape[-3], x.shape[-2]
  ay = interpolation_matrix(h, factor, method=method, antialias=antialias, dtype=x.dtype)
  ax = interpolation_matrix(w, factor, method=method, antialias=antialias, dtype=x.dtype)
  return jnp.einsum('ph,...hwc,qw->...pqc', ay, x, ax)


def level_shift(factor: float, base: float) -> int:
  """Number of scale levels a rescale by `factor` moves features: log_base(s).

  Rounded to the nearest integer (exact when s is an integer power of base).
  """
  if not isinstance(factor, numbers.Real):
    factor = float(factor)
  check_factor(factor)
  return int(round(math.log(factor) / math.log(base)))


def identity_transform(lhs, y, factor):
  """L'_s = identity: invariance of vectors (logits, pooled features)."""
  del factor
  return lhs, y


def spatial_transform(lhs, y, factor):
  """L'_s = rescale of a spatial map [B, H, W, C] by the same factor."""
  return lhs, rescale(y, factor)


def scale_space_transform(base: float):
  """L'_s for scale-space outputs [B, S, H, W, C].

  A rescale by s = base**j moves content j levels up the scale axis: level k of
  fn(L_s x) corresponds to level k - j of fn(x) rescaled spatially. Only the
  levels both sides share are compared.
  """
  def transform(lhs, y, factor):
    _checks.check_rank(y, 5, 'scale-space output', '[B, S, H, W, C]')
    j, s = level_shift(factor, base), y.shape[1]
    if abs(j) >= s:
      raise ValueError(f'factor {factor} shifts by {j} levels but the output has '
                       f'only {s}: no level is shared.')
    ry = rescale(y, factor)
    if j >= 0:
      return lhs[:, j:], ry[:, :s - j]
    return lhs[:, :s + j], ry[:, -j:]
  return transform


def default_out_transform(y):
  """identity for [B, D] outputs, spatial rescale for [B, H, W, C] maps."""
  if y.ndim == 2:
    return identity_transform
  if y.ndim == 4:
    return spatial_transform
  raise ValueError(
      f'no default output transform for outputs of shape {y.shape}; pass '
      'out_transform (e.g. scale_space_transform(base) for [B, S, H, W, C]).')


def nearest_upsample(x: jax.Array, factor: int, axes=(-3, -2)) -> jax.Array:
  """Integer nearest-neighbour up-sampling along the spatial axes."""
  for a in axes:
    x = jnp.repeat(x, factor, axis=a)
  return x


__all__ = ['rescale', 'interpolation_matrix', 'level_shift', 'identity_transform',
           'spatial_transform', 'scale_space_transform', 'default_out_transform',
           'nearest_upsample']
