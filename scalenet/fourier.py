"""Truly scale-equivariant Fourier layers (Rahman & Yeh, NeurIPS 2023): pure ops.

Scale is resolution here. `ideal_resample(x, n)`, written D_n, is the ideal
(anti-aliased) resampling of an image to an n x n grid: it keeps the Fourier
coefficients of every integer frequency |f| <= (n - 1) // 2 per axis and
drops the rest. The Nyquist frequency of an even grid is dropped too, so the
kept set is symmetric (the result of a real image is real) and the family is
consistent: D_m D_n = D_min(m, n) on images of at least that size. An exactly
scale-equivariant layer F commutes with every D_n: F(D_n x) = D_n F(x).

- `spectral_conv` multiplies every integer frequency by a filter that does
  not depend on the grid; `localized_filter` builds that filter as the
  G-point DFT of a k x k spatial kernel given by its k x k DFT coefficients
  (the reference's `get_mat` interpolation), so it is spatially localised.
  Exactly equivariant for every n.
- `scale_eq_nonlin` applies a pointwise nonlinearity at every resolution r
  of a ladder (base, base + increment, ..., the input's size): z_r =
  act(norm_r(D_r x)), and keeps from z_r only the frequencies first present
  at r, so the result at any frequency is computed from the lowest
  resolution that holds it. Exactly equivariant for every n of the ladder.
- `band_limited_stack` is the readout: the features low-passed at each
  resolution of a ladder, on one common grid, then max-pooled.

The resamplings and the nonlinearity's Fourier analysis and synthesis are
real matrices (one per axis) built once in float64 numpy: a matmul per axis;
the spectral conv is an FFT (rfft2). All differentiable and jittable.

References:
  Rahman & Yeh, "Truly Scale-Equivariant Deep Nets with Fourier Layers",
  NeurIPS 2023 (code: ashiq24/Scale_Equivarinat_Fourier_Layer).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from scalenet import _checks, pooling


def max_frequency(n: int) -> int:
  """The largest |f| that D_n keeps on an n-point axis: (n - 1) // 2."""
  return (int(n) - 1) // 2


def band_matrix(n_out: int, n_in: int, band: int | None = None) -> np.ndarray:
  """The 1-D operator of `ideal_resample` from n_in to n_out points, keeping
  |f| <= band as well when given."""
  keep = min(max_frequency(n_out), max_frequency(n_in))
  if band is not None:
    keep = min(keep, int(band))
  return _band_matrix(int(n_out), int(n_in), keep)


@functools.lru_cache(maxsize=None)
def _band_matrix(n_out: int, n_in: int, band: int) -> np.ndarray:
  """Real [n_out, n_in]: the frequencies |f| <= band of an n_in-point signal,
  synthesised on n_out points (the real basis's analysis, then synthesis)."""
  out = _real_basis(n_out, band)[1] @ _real_basis(n_in, band)[0]
  out.setflags(write=False)
  return out


def _size_pair(size) -> tuple[int, int]:
  h, w = (size, size) if np.ndim(size) == 0 else tuple(size)
  if int(h) != h or int(w) != w or min(h, w) < 1:
    raise ValueError(f'resample size must be positive integers; got {size!r}.')
  return int(h), int(w)


def ideal_resample(x: jax.Array, size, *, band=None) -> jax.Array:
  """D_size: x [..., H, W, C] resampled ideally to [..., h, w, C].

  Args:
    x: real array; its spatial axes are -3 and -2 (images [B, H, W, C] and
      scale-space tensors [B, S, H, W, C] alike).
    size: h, or (h, w): the output grid; smaller than the input's down-samples
      (anti-aliased), larger up-samples (band-limited interpolation).
    band: optional further band limit: keep |f| <= band only.
  """
  _checks.check_floating(x, 'ideal_resample input')
  if x.ndim < 3:
    raise ValueError(f'ideal_resample needs [..., H, W, C]; got shape {x.shape}.')
  h, w = _size_pair(size)
  mh = jnp.asarray(band_matrix(h, x.shape[-3], band), x.dtype)
  mw = jnp.asarray(band_matrix(w, x.shape[-2], band), x.dtype)
  return jnp.einsum('hH,...HWc,wW->...hwc', mh, x, mw)


@functools.lru_cache(maxsize=None)
def _interpolation(global_modes: int, local_modes: int) -> np.ndarray:
  """[G, k] complex: the G-point DFT of a k-point kernel from its k-point DFT."""
  m = np.arange(local_modes)
  dft_g = np.exp(-2j * np.pi * np.outer(np.arange(global_modes), m) / global_modes)
  idft_k = np.exp(2j * np.pi * np.outer(m, np.arange(local_modes)) / local_modes) / local_modes
  out = dft_g @ idft_k
  out.setflags(write=False)
  return out


def localized_filter(coefficients: jax.Array, global_modes: int) -> jax.Array:
  """[..., k, k] DFT coefficients of a k x k kernel -> its [..., G, G] G-point DFT.

  The filter of `spectral_conv`, indexed by frequency modulo G: the same
  function of the integer frequency on every grid up to G points.
  """
  k = coefficients.shape[-1]
  if coefficients.shape[-2] != k:
    raise ValueError(f'local modes must be square; got {coefficients.shape[-2:]}.')
  if global_modes < k:
    raise ValueError(f'global_modes ({global_modes}) must be >= local modes ({k}).')
  m = jnp.asarray(_interpolation(int(global_modes), k), jnp.complex64)
  return jnp.einsum('gm,...mn,hn->...gh', m, coefficients.astype(jnp.complex64), m)


def _grid_filter(table: jax.Array, n: int, axis: int) -> jax.Array:
  """The table's entries at the integer frequencies of an n-point grid along
  `axis` (zero past the table's band)."""
  g = table.shape[axis]
  freqs = np.fft.fftfreq(n, 1.0 / n).astype(int)  # signed integer frequencies
  inside = (freqs >= -(g // 2)) & (freqs < g - g // 2)
  picked = jnp.take(table, jnp.asarray(freqs % g), axis=axis)
  mask = jnp.asarray(inside).reshape([-1 if a == axis % table.ndim else 1
                                      for a in range(table.ndim)])
  return jnp.where(mask, picked, 0)


def spectral_conv(x: jax.Array, table: jax.Array) -> jax.Array:
  """Re ifft2(table(f) fft2(x)): [B, H, W, Cin] -> [B, H, W, Cout].

  `table` [Cin, Cout, G, G] (complex, e.g. `localized_filter`) gives the
  filter at every integer frequency modulo G; an H x W grid uses the
  frequencies it has (all of them for H, W <= G). The real part is kept: the
  reference feeds the complex result to its nonlinearity, which takes the
  real part first.
  """
  _checks.check_rank(x, 4, 'spectral_conv input', '[B, H, W, Cin]')
  if table.ndim != 4 or table.shape[0] != x.shape[-1]:
    raise ValueError(f'spectral_conv table must be [Cin={x.shape[-1]}, Cout, G, G]; '
                     f'got {table.shape}.')
  h, w = x.shape[1], x.shape[2]
  grid = _grid_filter(_grid_filter(table, h, 2), w, 3)
  # Re ifft2(T X) = ifft2(X (T(f) + conj T(-f)) / 2) for real x (X(-f) = conj X(f)):
  # a Hermitian product, so half the spectrum (rfft2) gives it exactly.
  mirrored = grid[..., (-np.arange(h)) % h, :][..., (-np.arange(w // 2 + 1)) % w]
  hermitian = (grid[..., :w // 2 + 1] + jnp.conj(mirrored)) / 2
  spec = jnp.fft.rfft2(x.astype(jnp.float32), axes=(1, 2), norm='forward')
  out = jnp.einsum('bhwi,iohw->bhwo', spec, hermitian)
  return jnp.fft.irfft2(out, s=(h, w), axes=(1, 2), norm='forward').astype(x.dtype)


def ladder(base: int, size: int, increment: int = 1) -> list[int]:
  """The resolutions of `scale_eq_nonlin` on a size-point input: base,
  base + increment, ... below size, then size."""
  base, size, increment = int(base), int(size), int(increment)
  if increment < 1:
    raise ValueError(f'increment must be >= 1; got {increment}.')
  if size < base:
    raise ValueError(f'the input ({size} x {size}) is smaller than the base resolution '
                     f'{base}: the layer is defined from {base} x {base} up.')
  return [*range(base, size, increment), size]


@functools.lru_cache(maxsize=None)
def _real_basis(n: int, band: int) -> tuple[np.ndarray, np.ndarray]:
  """The real Fourier basis of |f| <= band on n points, K = 2 band + 1 terms
  ordered 1, cos 1, sin 1, cos 2, sin 2, ... (so band b is the first 2b + 1).

  Returns (analysis [K, n], synthesis [n, K]): the analysis of n points
  followed by the synthesis on m points is `band_matrix(m, n, band)` for
  band <= max_frequency(min(m, n)) (so that no frequency aliases).
  """
  if band > max_frequency(n):
    raise ValueError(f'band {band} aliases on {n} points (at most {max_frequency(n)}).')
  t = np.arange(n)
  rows, cols = [np.full(n, 1.0 / n)], [np.ones(n)]
  for f in range(1, band + 1):
    c, s = np.cos(2 * np.pi * f * t / n), np.sin(2 * np.pi * f * t / n)
    rows += [c / n, s / n]
    cols += [2 * c, 2 * s]
  analysis, synthesis = np.stack(rows), np.stack(cols, axis=1)
  analysis.setflags(write=False)
  synthesis.setflags(write=False)
  return analysis, synthesis


def _analyse(x: jax.Array, band: int) -> jax.Array:
  """[B, n, n, C] -> [B, K, K, C]: the real Fourier coefficients of |f| <= band."""
  a = jnp.asarray(_real_basis(x.shape[1], band)[0], x.dtype)
  return jnp.einsum('kh,bhwc,lw->bklc', a, x, a)


def _synthesise(coefficients: jax.Array, n: int) -> jax.Array:
  """[B, K, K, C] -> [B, n, n, C]: the band-limited image of those coefficients."""
  band = (coefficients.shape[1] - 1) // 2
  s = jnp.asarray(_real_basis(n, band)[1], coefficients.dtype)
  return jnp.einsum('hk,bklc,wl->bhwc', s, coefficients, s)


def scale_eq_nonlin(x: jax.Array, act: Callable, *, base: int, increment: int = 1,
                    norm: Callable | None = None) -> jax.Array:
  """The scale-equivariant nonlinearity: [B, N, N, C] -> [B, N, N, C].

  For every resolution r of `ladder(base, N, increment)`:
  z_r = act(norm(r, D_r x)) on the r x r grid; the output's frequencies first
  kept at r (not at the rung below) are z_r's. D_n of the output therefore
  equals the output for D_n x at every rung n (exactly, up to rounding).

  Computed in the frequency domain: x's coefficients once, D_r x synthesised
  from the first of them, and the new ring of z_r's coefficients (only
  those are analysed) added to one spectrum synthesised once at the end. A
  rung whose band equals the rung below's (an even r after r - 1, since D
  drops the Nyquist frequency) has an empty ring: its z_r reaches no output
  frequency and is skipped.
  tests/test_fourier.py checks it against the definition (three resamplings
  per rung, numpy's FFT).

  Args:
    x: square feature maps.
    act: pointwise function (e.g. jax.nn.relu).
    base: the lowest resolution (the reference: 6).
    increment: step of the ladder (1: every resolution).
    norm: optional (r, z) -> z applied at resolution r before act (the
      reference: an instance norm with its own affine per resolution).
  """
  _checks.check_rank(x, 4, 'scale_eq_nonlin input', '[B, N, N, C]')
  n = x.shape[1]
  if x.shape[2] != n:
    raise ValueError(f'scale_eq_nonlin needs square maps; got {x.shape[1:3]}.')
  rungs = ladder(base, n, increment)
  top = max_frequency(n)
  spectrum = _analyse(x, top)
  out, inner = jnp.zeros_like(spectrum), None
  for r in rungs:
    band = max_frequency(r)
    if band == inner:
      continue  # empty ring
    k = 2 * band + 1
    z = _synthesise(spectrum[:, :k, :k], r)  # D_r x
    z = act(z if norm is None else norm(r, z))
    out = out + _ring(z, 0 if inner is None else 2 * inner + 1, k, 2 * top + 1)
    inner = band
  return _synthesise(out, n)


def _ring(z: jax.Array, j: int, k: int, size: int) -> jax.Array:
  """z's real Fourier coefficients with index in [j, k) on either axis
  (the frequencies new at z's rung), zero-padded to [B, size, size, C].

  Only those are analysed: the rows j..k-1 in full, then the columns j..k-1
  of the rows below j (with j = 0, the whole k x k block).
  """
  a = jnp.asarray(_real_basis(z.shape[1], (k - 1) // 2)[0], z.dtype)
  rows = jnp.einsum('kh,bhwc,lw->bklc', a[j:k], z, a)  # [B, k - j, k, C]
  out = jnp.pad(rows, ((0, 0), (j, size - k), (0, size - k), (0, 0)))
  if j:
    cols = jnp.einsum('kh,bhwc,lw->bklc', a[:j], z, a[j:k])  # [B, j, k - j, C]
    out = out + jnp.pad(cols, ((0, 0), (0, size - j), (j, size - k), (0, 0)))
  return out


def band_limited_stack(x: jax.Array, *, base: int, keep: int, pool: int,
                       increment: int = 1) -> jax.Array:
  """The readout: [B, N, N, C] -> [B, R, P, P, C], one entry per resolution r
  of `ladder(base, N, increment)`: x low-passed to r, synthesised on a
  keep x keep grid, max-pooled by `pool` (ceil mode: P = ceil(keep / pool)).

  Entry r depends on D_r x only, so the stack of D_n x is the first entries of
  the stack of x: a prediction made from entry r does not change when the
  input's resolution drops to any rung >= r.
  """
  _checks.check_rank(x, 4, 'band_limited_stack input', '[B, N, N, C]')
  entries = []
  for r in ladder(base, x.shape[1], increment):
    y = ideal_resample(x, keep, band=max_frequency(r))
    pad = -keep % pool
    entries.append(pooling.max_pool(y, pool, ((0, pad), (0, pad))))
  return jnp.stack(entries, axis=1)
