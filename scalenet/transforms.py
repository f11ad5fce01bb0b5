"""The rescale operator L_s, one for the whole project, and the L'_s it induces.

L_s (`rescale`) scales an image about its centre by `factor` (< 1 shrinks)
and keeps the canvas: shrinking leaves the border outside the rescaled image
at zero, which for digits on black is their true background; enlarging crops
what leaves the canvas. It is `jax.image.scale_and_translate` (separable
kernels, differentiable, jittable with a traced factor): 'linear' or 'cubic'
(Keys, a = -0.5, as PIL's `resize`), optionally antialiased when shrinking.
Its kernel weights are renormalised at the edge of the source, so L_s of a
constant is that constant wherever L_s is defined, and exactly 0 outside.
'pil_bicubic' is what PIL's affine transform does with BICUBIC (and so
torchvision's RandomAffine(resample=3), the reference scale-MNIST
generator's): cubic convolution with a = -1 (sharper than Keys' -0.5), the
source's edge pixels repeated, no antialias, 0 outside (`pil_bicubic_matrix`).

`RescaleSpec` names one choice of method and antialias. Data generation,
on-the-fly accuracy-vs-scale and the equivariance error of a run all use the
run's spec (`config.rescale`), and results.json records it.

How the group acts on a representation (L'_s) lives with the actions, in
`scalenet.representations`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from scalenet import _checks, fourier

METHODS = ('linear', 'cubic', 'lanczos3', 'lanczos5', 'pil_bicubic')

CANVAS = ('rescaled about the canvas centre, canvas size kept: shrinking fills the '
          'border outside the rescaled image with 0 (the background of digits on '
          'black), enlarging crops; Delta compares only where L\'_s fn(x) is defined')


def _check_method(method: str, antialias: bool) -> None:
  if method not in METHODS:
    raise ValueError(f'unknown rescale method {method!r}; choose from {METHODS}.')
  if method == 'pil_bicubic' and antialias:
    raise ValueError("'pil_bicubic' is PIL's affine transform, which does not antialias; "
                     'set antialias=False.')


@dataclasses.dataclass(frozen=True)
class RescaleSpec:
  """One choice of the rescale operator L_s.

  Attributes:
    method: 'linear' (bilinear), 'cubic' (bicubic, Keys a = -0.5),
      'lanczos3', 'lanczos5', or 'pil_bicubic' (PIL's affine BICUBIC, a = -1).
    antialias: widen the kernel by 1/s when shrinking (s < 1), so the result
      averages instead of aliasing. PIL's affine transform, which the
      reference scale-MNIST generator uses, does not ('pil_bicubic' never
      does).
  """
  method: str = 'linear'
  antialias: bool = True

  def __post_init__(self):
    _check_method(self.method, self.antialias)

  def __call__(self, x, factor):
    return rescale(x, factor, method=self.method, antialias=self.antialias)

  def describe(self) -> dict:
    """What results.json records about L_s."""
    return {'method': self.method, 'antialias': self.antialias, 'canvas': CANVAS}


# The project's default L_s (scale_mnist's default generator, Delta, accuracy
# vs scale); the reference generator is RescaleSpec('cubic', antialias=False).
DEFAULT = RescaleSpec()


def spec_from_config(config) -> RescaleSpec:
  """The run's L_s: config.rescale = {'method': ..., 'antialias': ...}."""
  cfg = config.get('rescale') or {}
  return RescaleSpec(**dict(cfg))


def check_factor(factor) -> None:
  """Raises ValueError for a concrete factor that is not finite and > 0."""
  try:
    value = float(factor)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return  # Traced: cannot be checked here.
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f'scale factor must be finite and > 0; got {factor!r}.')


def rescale(x: jax.Array, factor, *, method: str = DEFAULT.method,
            antialias: bool = DEFAULT.antialias) -> jax.Array:
  """The scale operator L_s: rescale about the image centre, same size.

  Args:
    x: [B, H, W, C] images, or [B, S, H, W, C] scale-space tensors (each
      level rescaled spatially).
    factor: scale factor s > 0 (< 1 shrinks, > 1 enlarges); may be traced.
    method: one of METHODS.
    antialias: widen the kernel when shrinking.

  Returns:
    Array of the same shape and dtype as `x`.

  Raises:
    ValueError: wrong rank, a factor <= 0 or not finite, unknown method.
  """
  _checks.check_rank(x, (4, 5), 'rescale input', '[B, H, W, C] or [B, S, H, W, C]')
  _checks.check_floating(x, 'rescale input')
  _check_method(method, antialias)
  check_factor(factor)
  h, w = x.shape[-3], x.shape[-2]
  s = jnp.asarray(factor, jnp.float32)
  if method == 'pil_bicubic':
    y = jnp.einsum('hH,...HWc,wW->...hwc', pil_bicubic_matrix(h, s), x.astype(jnp.float32),
                   pil_bicubic_matrix(w, s))
    return y.astype(x.dtype)
  # Continuous coordinates: pixel p covers [p, p + 1); the centre is size / 2.
  # out = s * in + (1 - s) * size / 2 keeps the centre fixed.
  scale = jnp.stack([s, s])
  translation = jnp.stack([(1 - s) * h / 2, (1 - s) * w / 2])
  y = jax.image.scale_and_translate(x, x.shape, (x.ndim - 3, x.ndim - 2), scale,
                                    translation, method=method, antialias=antialias)
  return y.astype(x.dtype)


def _cubic_convolution(t: jax.Array, a: float) -> jax.Array:
  """The cubic convolution kernel with parameter a at distance t (support |t| < 2)."""
  t = jnp.abs(t)
  near = ((a + 2) * t - (a + 3)) * t * t + 1
  far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
  return jnp.where(t <= 1, near, jnp.where(t < 2, far, 0.0))


def pil_bicubic_matrix(n: int, factor) -> jax.Array:
  """[n, n]: one axis of PIL's affine BICUBIC rescale by `factor` about the centre.

  Output pixel u samples the source at x = (u + 1/2 - n/2) / factor + n/2
  (pixel p covers [p, p + 1)): 0 if x is outside [0, n), else the four
  pixels around x - 1/2 weighted by the a = -1 kernel, indices past the
  edge clamped to it (libImaging/Geometry.c). `factor` may be traced.
  """
  u = jnp.arange(n, dtype=jnp.float32) + 0.5
  x = (u - n / 2) / factor + n / 2
  start = jnp.floor(x - 0.5)
  taps = start[:, None] + jnp.arange(-1, 3, dtype=jnp.float32)  # [n, 4]
  weights = _cubic_convolution(x[:, None] - 0.5 - taps, -1.0)
  columns = jax.nn.one_hot(jnp.clip(taps, 0, n - 1).astype(jnp.int32), n, dtype=jnp.float32)
  inside = (x >= 0) & (x < n)
  return jnp.where(inside[:, None], jnp.einsum('ut,utn->un', weights, columns), 0.0)


RescaleFn = Callable[[jax.Array, float], jax.Array]

GRID = ('resampled to a grid of round(s H) x round(s W) pixels, content and canvas '
        'together: ideal (spectral crop) down-sampling, band-limited up-sampling')


@dataclasses.dataclass(frozen=True)
class Resolution:
  """L_s as a change of resolution, beside the canvas rescale.

  The whole image is resampled ideally (`fourier.ideal_resample`: Fourier
  coefficients |f| <= (n - 1) // 2 kept, the anti-aliasing of Rahman & Yeh
  2023) to round(s H) x round(s W) pixels: the digit keeps its place on a
  smaller (s < 1) or finer (s > 1) grid. On a map of a model, L'_s is the same
  resampling to the grid the model's map has at the new resolution
  (`to_shape`), so models whose maps shrink with their input (pooling) are
  measured on their own grids. Only models that take inputs of other sizes
  can be measured under it. The factor must be concrete (it sets a shape).
  """

  def __call__(self, x, factor):
    _checks.check_rank(x, (4, 5), 'resolution input', '[B, H, W, C] or [B, S, H, W, C]')
    try:
      s = float(factor)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:
      raise ValueError('the resolution action needs a concrete factor (it sets the output '
                       'grid); got a traced value.') from e
    check_factor(s)
    size = (max(1, round(x.shape[-3] * s)), max(1, round(x.shape[-2] * s)))
    return fourier.ideal_resample(x, size)

  def to_shape(self, y, shape):
    """L'_s on a representation: ideal resampling of its spatial axes to `shape` (h, w)."""
    return fourier.ideal_resample(y, tuple(shape))

  def describe(self) -> dict:
    return {'method': 'ideal', 'antialias': True, 'canvas': GRID}


RESOLUTION = Resolution()


def nearest_upsample(x: jax.Array, factor: int, axes=(-3, -2)) -> jax.Array:
  """Integer nearest-neighbour up-sampling along the spatial axes (canvas grows).

  The one nearest up-sampler (e.g. the _56 models' `nn.Upsample(scale_factor=2)`);
  factor 1 returns x.
  """
  if factor == 1:
    return x
  for a in axes:
    x = jnp.repeat(x, factor, axis=a)
  return x


__all__ = ['RescaleSpec', 'DEFAULT', 'METHODS', 'RescaleFn', 'Resolution', 'RESOLUTION',
           'rescale', 'nearest_upsample', 'spec_from_config']
