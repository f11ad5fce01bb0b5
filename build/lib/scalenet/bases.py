"""Fixed multi-scale filter bases for the steerable baselines (numpy, built once).

  * `hermite_gaussian_basis` (SESN): psi_{sigma,n,m}(x, y) =
    H_n(x / sigma) H_m(y / sigma) exp(-(x^2 + y^2) / (2 sigma^2)) / sigma^2,
    sampled on a k x k grid for each scale sigma, every function normalised
    by its norm at the smallest scale (so scaled copies keep their relation).
  * `log_radial_harmonic_basis` (SS-CNN): psi_{j,m}(r, theta) =
    w(r) cos(2 pi j log(r) / log(R) + phase) * {cos, sin}(m theta), with a
    smooth radial window w; rescaling by lambda only shifts the log-radial
    phase, which is what makes the filters scale-steerable.

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks", ICLR 2020.
  Ghosh & Gupta, "Scale Steerable Filters for Locally Scale-Invariant
  Convolutional Neural Networks", ICML workshop 2019.
"""

from __future__ import annotations

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


def log_radial_harmonic_basis(size: int, scales, radial: int, angular: int) -> np.ndarray:
  """[F, S, size, size] basis, F = radial * (2 * angular + 1) + 1 (centre tap)."""
  yy, xx = _grid(size)
  funcs = []
  for j, lam in enumerate(scales):
    r = np.hypot(yy, xx) / lam
    theta = np.arctan2(yy, xx)
    logr = np.log(np.maximum(r, 1e-6))
    rmax = (size - 1) / 2 / lam
    window = np.where(r > 0, np.exp(-(logr - np.log(max(rmax, 1.01) / 2)) ** 2 / 0.5), 0.0)
    level = []
    for k in range(radial):
      radial_part = window * np.cos(2 * np.pi * k * logr / np.log(size) + 0.5 * k)
      level.append(radial_part)
      for m in range(1, angular + 1):
        level.append(radial_part * np.cos(m * theta))
        level.append(radial_part * np.sin(m * theta))
    centre = np.exp(-(r * lam) ** 2 / (2 * (0.5 * lam) ** 2))
    level.append(centre)
    funcs.append(np.stack(level) / lam**2)
  basis = np.stack(funcs, axis=1)  # [F, S, k, k]
  norms = np.linalg.norm(basis[:, 0], axis=(-2, -1), keepdims=True)
  return (basis / np.maximum(norms[:, None], 1e-8)).astype(np.float32)
