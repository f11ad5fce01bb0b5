"""Hermite-Gaussian filter bases (numpy, built once): the study's and the published SESN's.

  * `hermite_gaussian_basis` (the study's SESN, `models.steerable`):
    psi_{sigma,n,m}(x, y) = H_n(x / sigma) H_m(y / sigma)
    exp(-(x^2 + y^2) / (2 sigma^2)) / sigma^2 on a k x k grid per scale,
    every function normalised by its norm at the smallest scale.
  * `steerable_hermite_basis` (the published SESN models, `models.mnist_ses`,
    and DISCO's widths), below:

  basis = steerable_hermite_basis(size, scales, num_funcs=49, max_order=4, mult=1.5)
  basis.shape == (num_funcs, len(scales), size, size)    # [F, S, k, k]

Function f at scale s is a separable Hermite-Gaussian

  psi_{n,m,sigma}(y, x) = G_sigma(y) He_n(y / sigma) G_sigma(x) He_m(x / sigma),
  G_sigma(t) = exp(-t^2 / (2 sigma^2)) / sigma,

with n + m <= max_order (15 functions for max_order 4), and, once those run
out, the same orders at the narrower widths sigma / mult, sigma / mult^2, ...,
until there are num_funcs functions ("basis B" of the reference; width
sigma = s / mult^l for the l-th group). Level s is sampled on its own centred
grid of int(size * s / max(scales)) // 2 * 2 + 1 taps, then zero-padded to
size x size, so a small scale never sees the taps a large one would reach.
Every function is divided by its norm at the smallest scale, so the levels of
one function keep the relation psi_{a sigma}(a t) = psi_sigma(t) / a^2 of the
continuous functions.

`hermite_gaussian_basis` differs: it has no widths below
sigma (its functions are all orders n + m < order at one width), and samples
every scale on the full grid.

Scales are rounded as the reference rounds them: `reference_scales` returns
round(min_scale * q^i, 2) with q = factor^(1/(num_scales-1)). The nominal ratio
q between consecutive levels (before rounding) is what the models declare as
their scale-space ratio (`representations.scale_space(q)`).

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks",
  ICLR 2020 (Sec. 4; code: ISosnovik/sesn, models/impl/ses_basis.py, which
  this module follows: steerable_B, multiscale_hermite_gaussian,
  normalize_basis_by_min_scale).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial import hermite_e


def _grid(size: int):
  r = (size - 1) / 2
  return np.mgrid[-r:r + 1, -r:r + 1]


def hermite_gaussian_basis(size: int, scales, order: int) -> np.ndarray:
  """[F, S, size, size] basis, F = order * (order + 1) / 2 (n + m < order)."""
  yy, xx = _grid(size)
  pairs = [(n, m) for n in range(order) for m in range(order) if n + m < order]
  basis = np.zeros((len(pairs), len(scales), size, size))
  for f, (n, m) in enumerate(pairs):
    cn, cm = np.eye(order)[n], np.eye(order)[m]
    for j, s in enumerate(scales):
      g = np.exp(-(xx**2 + yy**2) / (2 * s**2)) / s**2
      basis[f, j] = hermite_e.hermeval(yy / s, cn) * hermite_e.hermeval(xx / s, cm) * g
    basis[f] /= np.linalg.norm(basis[f, 0])
  return basis.astype(np.float32)


def scale_ratio(factor: float, num_scales: int) -> float:
  """The nominal ratio q = factor^(1/(num_scales-1)) between consecutive levels."""
  if num_scales < 2:
    raise ValueError(f'a scale space needs at least 2 scales; got {num_scales}.')
  return float(factor) ** (1.0 / (num_scales - 1))


def reference_scales(min_scale: float, factor: float, num_scales: int,
                     decimals: int = 2) -> tuple[float, ...]:
  """round(min_scale * q^i, decimals), i < num_scales: the reference's basis scales.

  The reference rounds to 2 decimals when it builds the scales (mnist_ses.py,
  mnist_disco_models.py); its layers round again to 3 decimals only for
  printing, which changes nothing. So e.g. 2 * 2^(1/2) becomes 2.83.
  """
  q = scale_ratio(factor, num_scales)
  return tuple(round(min_scale * q**i, decimals) for i in range(num_scales))


def hermite_orders(max_order: int) -> list[tuple[int, int]]:
  """(row order n, column order m) with n + m <= max_order, in the reference's order."""
  # The reference enumerates (i, j) row-major over (max_order+1)^2 and uses j
  # along the first (row) axis of the kernel, i along the second.
  return [(j, i) for i in range(max_order + 1) for j in range(max_order + 1)
          if i + j <= max_order]


def hermite_gaussian_1d(t: np.ndarray, sigma: float, order: int) -> np.ndarray:
  """G_sigma(t) He_order(t / sigma), G_sigma(t) = exp(-t^2 / (2 sigma^2)) / sigma."""
  coeffs = np.eye(order + 1)[order]
  return np.exp(-t**2 / (2 * sigma**2)) / sigma * hermite_e.hermeval(t / sigma, coeffs)


def hermite_varying_width(size: int, sigma: float, *, num_funcs: int, max_order: int = 4,
                          mult: float = 1.5) -> np.ndarray:
  """[num_funcs, size, size]: all orders at width sigma, then sigma / mult, ...

  Args:
    size: odd grid size; taps at -(size // 2) .. size // 2.
    sigma: the widest Gaussian envelope.
    num_funcs: number of functions kept (the last group may be cut).
    max_order: n + m <= max_order per width.
    mult: ratio between consecutive widths.

  Returns:
    float64 [num_funcs, size, size], unnormalised.
  """
  t = np.arange(size, dtype=np.float64) - size // 2
  orders = hermite_orders(max_order)
  widths = math.ceil(num_funcs / len(orders))
  funcs = []
  for level in range(widths):
    w = sigma / mult**level
    for n, m in orders:
      funcs.append(np.outer(hermite_gaussian_1d(t, w, n), hermite_gaussian_1d(t, w, m)))
  return np.stack(funcs[:num_funcs])


def support_size(size: int, scale: float, max_scale: float) -> int:
  """Odd number of taps level `scale` is sampled on: int(size * s / s_max) // 2 * 2 + 1."""
  return int(size * scale / max_scale) // 2 * 2 + 1


def normalize_by_min_scale(basis: np.ndarray) -> np.ndarray:
  """[F, S, k, k] divided, function by function, by its norm at level 0."""
  norms = np.sqrt(np.sum(basis[:, :1] ** 2, axis=(-2, -1), keepdims=True))
  return basis / norms


def steerable_hermite_basis(size: int, scales, *, num_funcs: int = 49, max_order: int = 4,
                            mult: float = 1.5) -> np.ndarray:
  """[F, S, size, size] float32: the SESN basis B at each of `scales` (ascending).

  Args:
    size: odd kernel size of every level.
    scales: basis scales sigma_0 < sigma_1 < ... (e.g. `reference_scales`).
    num_funcs: F, the number of basis functions (effective_size^2 = 49 in the
      published models).
    max_order: Hermite orders n + m <= max_order per width.
    mult: ratio of the Gaussian widths within one level.

  Returns:
    The basis, normalised by its norm at the smallest scale.

  Raises:
    ValueError: an even size, unsorted scales, or a level with a single tap.
  """
  scales = [float(s) for s in scales]
  if size % 2 == 0:
    raise ValueError(f'kernel size must be odd; got {size}.')
  if any(b <= a for a, b in zip(scales, scales[1:])):
    raise ValueError(f'scales must be strictly increasing; got {scales}.')
  levels = []
  for s in scales:
    n = support_size(size, s, scales[-1])
    if n < 3:
      raise ValueError(f'scale {s} gets {n} tap(s) on a {size}-grid; use a larger size.')
    pad = (size - n) // 2
    funcs = hermite_varying_width(n, s, num_funcs=num_funcs, max_order=max_order, mult=mult)
    levels.append(np.pad(funcs, ((0, 0), (pad, pad), (pad, pad))))
  return normalize_by_min_scale(np.stack(levels, axis=1)).astype(np.float32)
