"""Log-radial harmonic filter bases (numpy, built once): the study's and SS-CNN's.

  * `log_radial_harmonic_basis` (the study's SS-CNN, `models.steerable`):
    psi_{j,m}(r, theta) = w(r) cos(2 pi j log(r) / log(R) + phase)
    {cos, sin}(m theta) with a smooth radial window w; rescaling by lambda
    only shifts the log-radial phase, which makes the filters scale-steerable.
  * `filter_bank` and friends (the published harness's SS-CNN,
    `models.mnist_ss`): real, imag, k_eff = log_radial_filters(13, phi0=0.0, sigma_phi=pi/16, k=1.0, phase=-pi/4)

A filter is an angular Gaussian bump around direction phi0 (and phi0 + pi),
divided by the radius r, times a log-radial harmonic of frequency k:

  psi(r, phi) = exp(-d(phi, phi0)^2 / (2 sigma_phi^2)) / r * exp(i (k_eff log r + phase)),
  k_eff = 2 pi k / log(r_max),

on a size x size grid (r = 1 at the centre tap, r_max the corner's radius),
cut to the disc r <= (size - 1) / 2 and normalised (real and imaginary parts
separately, to unit norm). Rescaling the argument by s multiplies the
harmonic by exp(i k_eff log s): `steer` applies that phase to complex
coefficients, which is what makes the filters scale-steerable.

The grid's first axis points up (x = c - row), its second right
(y = col - c), and phi = atan2(y, x), as the reference.

References:
  Ghosh & Gupta, "Scale Steerable Filters for Locally Scale-Invariant
  Convolutional Neural Networks", ICML workshop 2019. Code followed: the SESN
  harness's modified copy, ISosnovik/sesn, models/impl/scale_steerable.py
  (generate_filter_basis, steerable_conv.combination).
"""

from __future__ import annotations

import numpy as np

from scalenet.bases.hermite import _grid


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


def _angular_distance(phi: np.ndarray, phi0: float) -> np.ndarray:
  """|phi - phi0| allowing one wrap by 2 pi (the reference's L1 / L2)."""
  return np.abs(np.minimum(np.abs(phi - phi0), np.abs(phi + 2 * np.pi - phi0)))


def log_radial_filters(size: int, phi0: float, sigma_phi: float, k: float,
                       phase: float) -> tuple[np.ndarray, np.ndarray, float]:
  """(real [size, size], imag [size, size], k_eff) of one filter (see module docstring)."""
  if size % 2 == 0:
    raise ValueError(f'filter size must be odd; got {size}.')
  c = (size - 1) // 2
  rows, cols = np.mgrid[0:size, 0:size]
  x, y = (c - rows).astype(float), (cols - c).astype(float)
  r = np.hypot(x, y)
  mask = r <= c
  r[c, c] = 1.0  # the centre tap: log r = 0
  phi = np.arctan2(y, x)
  d = np.minimum(_angular_distance(phi, phi0 + np.pi), _angular_distance(phi, phi0))
  envelope = np.exp(-d**2 / (2 * sigma_phi**2)) / r
  k_eff = 2 * np.pi * k / np.log(r.max())
  arg = k_eff * np.log(r) + phase
  real, imag = envelope * np.cos(arg) * mask, envelope * np.sin(arg) * mask
  return real / np.linalg.norm(real), imag / np.linalg.norm(imag), float(k_eff)


def filter_bank(size: int, *, ks=(0.5, 1.0, 2.0), phis=tuple(np.linspace(0, np.pi, 9)),
                sigma_phi: float = np.pi / 16, phase: float = -np.pi / 4):
  """(real [K, P, size, size], imag [K, P, size, size], k_eff [K]) float32/float64.

  K = len(ks) log-radial frequencies, P = len(phis) directions. The
  reference's directions linspace(0, pi, 9) include both 0 and pi, which give
  the same filter (the envelope is symmetric under phi0 -> phi0 + pi); kept,
  as in the reference, for its parameter count.
  """
  real = np.zeros((len(ks), len(phis), size, size))
  imag = np.zeros_like(real)
  k_eff = np.zeros(len(ks))
  for i, k in enumerate(ks):
    for j, phi0 in enumerate(phis):
      real[i, j], imag[i, j], k_eff[i] = log_radial_filters(size, phi0, sigma_phi, k, phase)
  return real.astype(np.float32), imag.astype(np.float32), k_eff


def crop_centre(filters: np.ndarray, size: int) -> np.ndarray:
  """The central size x size taps of [..., n, n] filters."""
  n = filters.shape[-1]
  lo = (n - size) // 2
  return filters[..., lo:lo + size, lo:lo + size]


def steering_phases(k_eff: np.ndarray, scale: float) -> np.ndarray:
  """[K] angles theta_k = -k_eff log(scale): coefficients rotate by exp(i theta_k) at `scale`."""
  return -np.asarray(k_eff) * np.log(scale)
