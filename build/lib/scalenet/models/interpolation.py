"""PyTorch's `F.interpolate` and centred crop/pad, as fixed resampling matrices.

The published scale-MNIST models (ISosnovik/sesn) rescale images and kernels
with `F.interpolate` and then crop or zero-pad them back to their size about
the centre. Our `transforms.rescale` is a different operator (it keeps the
canvas with continuous coordinates and renormalised edge weights), so the
models that follow the reference use these matrices instead: every size is
static, each 1-D resampling is a small [n_out, n_in] numpy matrix, and
applying one is an einsum over a spatial axis (differentiable, jittable).

Conventions (PyTorch >= 1.6, `recompute_scale_factor` unset):
  * bilinear, align_corners=True: src = dst * (n_in - 1) / (n_out - 1);
  * bilinear, align_corners=False: src = max((dst + 0.5) * n_in / n_out - 0.5, 0);
  * nearest with a scale factor s: src = min(floor(dst / s), n_in - 1);
  * output size of a rescale by s: floor(n * s), in float64.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def bilinear(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
  """[n_out, n_in]: 1-D linear interpolation as `F.interpolate(mode='bilinear')`."""
  dst = np.arange(n_out, dtype=np.float64)
  if align_corners:
    src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
  else:
    src = np.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)
  lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = src - lo
  m = np.zeros((n_out, n_in))
  np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
  np.add.at(m, (np.arange(n_out), hi), frac)
  return m


@functools.lru_cache(maxsize=None)
def nearest(n_in: int, n_out: int, scale: float) -> np.ndarray:
  """[n_out, n_in]: `F.interpolate(mode='nearest', scale_factor=scale)`."""
  src = np.minimum(np.floor(np.arange(n_out) / scale).astype(np.int64), n_in - 1)
  m = np.zeros((n_out, n_in))
  m[np.arange(n_out), src] = 1.0
  return m


@functools.lru_cache(maxsize=None)
def centre(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in]: crop (n_in > n_out) or zero-pad (n_in < n_out) about the centre.

  The low side gets floor((n_out - n_in) / 2) (negative: that many cropped),
  the high side the rest, as the reference's `F.pad` with signed pads.
  """
  lo = (n_out - n_in) // 2
  m = np.zeros((n_out, n_in))
  for i in range(n_in):
    if 0 <= i + lo < n_out:
      m[i + lo, i] = 1.0
  return m


def rescaled_size(n: int, scale: float) -> int:
  """floor(n * scale): the size `F.interpolate(scale_factor=scale)` gives."""
  return int(math.floor(float(n) * float(scale)))


@functools.lru_cache(maxsize=None)
def rescale_in_place(n: int, scale: float, mode: str = 'bilinear') -> np.ndarray:
  """[n, n]: rescale by `scale` then centre-crop or pad back to n.

  The reference's `rescale4d`: bilinear uses align_corners=True; 'nearest'
  takes the scale factor itself. scale == 1 is the identity.
  """
  if scale == 1:
    return np.eye(n)
  m = rescaled_size(n, scale)
  if m < 1:
    raise ValueError(f'rescaling a size-{n} axis by {scale} leaves no pixel.')
  if mode == 'bilinear':
    interp = bilinear(n, m, True)
  elif mode == 'nearest':
    interp = nearest(n, m, float(scale))
  else:
    raise ValueError(f"mode must be 'bilinear' or 'nearest'; got {mode!r}.")
  return centre(m, n) @ interp


def resample(x: jax.Array, rows: np.ndarray, cols: np.ndarray) -> jax.Array:
  """Applies [H', H] to axis -3 and [W', W] to axis -2 of x [..., H, W, C]."""
  rows = jnp.asarray(rows, x.dtype)
  cols = jnp.asarray(cols, x.dtype)
  return jnp.einsum('ah,...hwc,bw->...abc', rows, x, cols)
