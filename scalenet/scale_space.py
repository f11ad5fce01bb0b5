"""Scale-space lifting: image [B, H, W, C] -> scale-space [B, S, H, W, C].

Two liftings, as in Deep Scale Spaces:
  * `gaussian_lift` (DSS v1): level k is the image blurred to scale
    sigma_k = zero_scale * base**k with the discrete Gaussian kernel, all
    levels at full resolution.
  * `bilinear_lift` (DSS v2): level k is the image bilinearly down-sampled by
    base**k; `match_sizes` max-pools all levels to the coarsest size.

References:
  Worrall & Welling, "Deep Scale-spaces: Equivariance Over Scale", NeurIPS 2019.
  Lindeberg, "Scale-space for discrete signals", IEEE PAMI 1990.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from scalenet import _checks

# Kernel mass allowed outside the truncated support, per 1-D kernel.
TRUNCATION_TOLERANCE = 1e-5


def level_variances(num_scales: int, base: float, zero_scale: float) -> np.ndarray:
  """Blur variance t_k = zero_scale**2 (base**(2k) - 1) added at level k.

  The input is taken to be at scale zero_scale already, so blurring with
  variance t_k brings it to total scale sigma_k = zero_scale * base**k.
  """
  k = np.arange(num_scales)
  return zero_scale**2 * (float(base) ** (2 * k) - 1.0)


def discrete_gaussian_kernel(t: float, tol: float = TRUNCATION_TOLERANCE) -> np.ndarray:
  """1-D discrete Gaussian T(n, t) = exp(-t) I_n(t), truncated and normalised.

  The radius is the smallest one whose tails hold less than `tol` of the mass
  (always < 1e-4, the bound the design asks for). t == 0 gives the identity.
  """
  if t < 0:
    raise ValueError(f'variance t must be >= 0; got {t}.')
  if t == 0:
    return np.ones((1,))
  radius = 1
  while True:
    n = np.arange(-radius, radius + 1)
    taps = scipy.special.ive(n, t)  # exp(-t) I_n(t), stable for large t.
    if 1.0 - taps.sum() < tol:
      return taps / taps.sum()
    radius += max(1, radius // 4)


def _stacked_kernels(variances: np.ndarray) -> np.ndarray:
  """Per-level 1-D kernels zero-padded to a common odd width: [S, K]."""
  kernels = [discrete_gaussian_kernel(float(t)) for t in variances]
  width = max(len(k) for k in kernels)
  out = np.zeros((len(kernels), width))
  for s, k in enumerate(kernels):
    pad = (width - len(k)) // 2
    out[s, pad:pad + len(k)] = k
  return out


def gaussian_lift(x: jax.Array, *, num_scales: int, base: float = 2.0,
                  zero_scale: float = 0.5) -> jax.Array:
  """Lifts images to a Gaussian scale space (DSS v1).

  Level k is `x` convolved (zero padding, separably) with the discrete
  Gaussian of variance t_k = zero_scale**2 (base**(2k) - 1); level 0 is `x`.

  Args:
    x: images [B, H, W, C], floating point.
    num_scales: number of levels S >= 1.
    base: scale ratio between consecutive levels, > 1 (need not be integer).
    zero_scale: scale of the input image, > 0.

  Returns:
    [B, S, H, W, C], same dtype as `x`.

  Raises:
    ValueError / TypeError on bad rank, dtype or hyperparameters.
  """
  _checks.check_rank(x, 4, 'gaussian_lift input', '[B, H, W, C]')
  _checks.check_floating(x, 'gaussian_lift input')
  num_scales = _checks.positive_int(num_scales, 'num_scales')
  if not base > 1.0 and num_scales > 1:
    raise ValueError(f'base must be > 1; got {base!r}.')
  if not zero_scale > 0:
    raise ValueError(f'zero_scale must be > 0; got {zero_scale!r}.')
  kernels = _stacked_kernels(level_variances(num_scales, base, zero_scale))
  # Each level is two 1-D blurs written as sums of shifted copies: elementwise
  # work that XLA fuses, where a level-grouped conv would be slow on XLA:CPU
  # (benchmarks/README.md, gaussian_lift).
  return jnp.stack([_blur(_blur(x, row, axis=1), row, axis=2) for row in kernels], axis=1)


def _blur(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
  """Correlation of x with the odd-length 1-D `taps` along `axis`, zero padding."""
  nonzero = np.flatnonzero(taps)
  pad = len(taps) // 2
  if len(nonzero) == 1 and nonzero[0] == pad and taps[pad] == 1.0:
    return x  # the identity (level 0)
  n = x.shape[axis]
  widths = [(0, 0)] * x.ndim
  widths[axis] = (pad, pad)
  padded = jnp.pad(x, widths)
  out = None
  for i in nonzero:
    term = jax.lax.slice_in_dim(padded, int(i), int(i) + n, axis=axis) * jnp.asarray(
        taps[i], x.dtype)
    out = term if out is None else out + term
  return out


def level_size(size: int, base: float, level: int) -> int:
  """Size of level `level` of a bilinear lift: floor(size / base**level), >= 1."""
  return max(1, int(math.floor(size / float(base) ** level + 1e-9)))


def bilinear_lift(x: jax.Array, *, num_scales: int, base: float = 2.0
                  ) -> tuple[jax.Array, ...]:
  """Lifts images to a pyramid of bilinear down-samplings (DSS v2).

  Level k has spatial size floor(H / base**k) x floor(W / base**k) (as
  PyTorch's `interpolate(scale_factor=...)`), sampled bilinearly about the
  image centre without anti-aliasing; level 0 is `x`.

  Args:
    x: images [B, H, W, C], floating point.
    num_scales: number of levels S >= 1.
    base: down-sampling ratio between consecutive levels, > 1.

  Returns:
    A tuple of S arrays [B, H_k, W_k, C].
  """
  _checks.check_rank(x, 4, 'bilinear_lift input', '[B, H, W, C]')
  _checks.check_floating(x, 'bilinear_lift input')
  num_scales = _checks.positive_int(num_scales, 'num_scales')
  if not base > 1.0 and num_scales > 1:
    raise ValueError(f'base must be > 1; got {base!r}.')
  b, h, w, c = x.shape
  levels = [x]
  for k in range(1, num_scales):
    shape = (b, level_size(h, base, k), level_size(w, base, k), c)
    levels.append(jax.image.resize(x, shape, 'linear', antialias=False))
  return tuple(levels)


def _adaptive_max_1d(x: jax.Array, out: int, axis: int) -> jax.Array:
  """Adaptive max pooling along `axis` to `out` cells (PyTorch's bins)."""
  n = x.shape[axis]
  if n % out == 0:
    window = [1] * x.ndim
    window[axis] = n // out
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, 'VALID')
  cells = []
  for i in range(out):
    lo, hi = (i * n) // out, -((-(i + 1) * n) // out)
    cells.append(jax.lax.slice_in_dim(x, lo, hi, axis=axis).max(axis=axis, keepdims=True))
  return jnp.concatenate(cells, axis=axis)


def match_sizes(levels) -> jax.Array:
  """Max-pools every level to the smallest level's size and stacks them.

  Args:
    levels: sequence of S arrays [B, H_k, W_k, C] (e.g. from `bilinear_lift`).

  Returns:
    [B, S, h, w, C] with h, w the smallest level's size.
  """
  if not levels:
    raise ValueError('match_sizes needs at least one level.')
  for k, lv in enumerate(levels):
    _checks.check_rank(lv, 4, f'match_sizes level {k}', '[B, H, W, C]')
  h = min(lv.shape[1] for lv in levels)
  w = min(lv.shape[2] for lv in levels)
  pooled = [_adaptive_max_1d(_adaptive_max_1d(lv, h, 1), w, 2) for lv in levels]
  return jnp.stack(pooled, axis=1)
