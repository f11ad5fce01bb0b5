"""The rescale operator L_s, one for the whole project, and the L'_s it induces.

L_s (`rescale`) scales an image about its centre by `factor` (< 1 shrinks)
and keeps the canvas: shrinking leaves the border outside the rescaled image
at zero, which for digits on black is their true background; enlarging crops
what leaves the canvas. It is `jax.image.scale_and_translate` (separable
kernels, differentiable, jittable with a traced factor): 'linear' or 'cubic'
(Keys, a = -0.5, as PIL's bicubic), optionally antialiased when shrinking.
Its kernel weights are renormalised at the edge of the source, so L_s of a
constant is that constant wherever L_s is defined, and exactly 0 outside.

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

METHODS = ('linear', 'cubic', 'lanczos3', 'lanczos5')

CANVAS = ('rescaled about the canvas centre, canvas size kept: shrinking fills the '
          'border outside the rescaled image with 0 (the background of digits on '
          'black), enlarging crops; Delta compares only where L\'_s fn(x) is defined')


@dataclasses.dataclass(frozen=True)
class RescaleSpec:
  """One choice of the rescale operator L_s.

  Attributes:
    method: 'linear' (bilinear), 'cubic' (bicubic), 'lanczos3' or 'lanczos5'.
    antialias: widen the kernel by 1/s when shrinking (s < 1), so the result
      averages instead of aliasing. PIL's affine transform, which the
      reference scale-MNIST generator uses, does not.
  """
  method: str = 'linear'
  antialias: bool = True

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f'unknown rescale method {self.method!r}; choose from {METHODS}.')

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
  if method not in METHODS:
    raise ValueError(f'unknown rescale method {method!r}; choose from {METHODS}.')
  check_factor(factor)
  h, w = x.shape[-3], x.shape[-2]
  s = jnp.asarray(factor, jnp.float32)
  # Continuous coordinates: pixel p covers [p, p + 1); the centre is size / 2.
  # out = s * in + (1 - s) * size / 2 keeps the centre fixed.
  scale = jnp.stack([s, s])
  translation = jnp.stack([(1 - s) * h / 2, (1 - s) * w / 2])
  y = jax.image.scale_and_translate(x, x.shape, (x.ndim - 3, x.ndim - 2), scale,
                                    translation, method=method, antialias=antialias)
  return y.astype(x.dtype)


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
