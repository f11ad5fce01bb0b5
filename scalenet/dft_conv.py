"""conv2d's 'dft' path: the convolution theorem with matrix-product transforms.

Contract: `conv(x, kernel, pads, stride, dilation)` equals
`lax.conv_general_dilated(x, kernel, (stride, stride), pads,
rhs_dilation=(dilation, dilation), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`
to float32 rounding, in value and in gradients (a written-out VJP).

The discrete Fourier transforms are small dense matrices (exact lengths, no
FFT sizes), applied in a frequency-major layout [F1, F2, B, C] so that XLA
inserts no transposes of the spectra; its cost hardly depends on the kernel
size, which is why `conv.choose_method` picks it for large kernels on CPU
(benchmarks/README.md has the measurements).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _crop_negative_padding(x, pads):
  """Negative padding crops the input (as in lax): (cropped x, padding >= 0)."""
  (pt, pb), (pl, pr) = pads
  h, w = x.shape[1:3]
  x = x[:, max(-pt, 0):h + min(pb, 0), max(-pl, 0):w + min(pr, 0)]
  return x, tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)


def dft_length(size: int, pads) -> int:
  """The transform length of 'dft' along an axis: size + max(lo, hi) padding.

  Circular correlation of length n reads input index m mod n where linear
  correlation reads m, for m in [-lo, size + hi). Both agree when every m
  outside [0, size) lands on a zero of the length-n signal, i.e. when
  n >= size + lo and n >= size + hi. (An FFT would pad to size + lo + hi
  rounded up to a fast FFT size: up to 2x more frequencies on 'SAME' convs.)
  """
  return size + max(pads)


@functools.lru_cache(maxsize=256)
def _dft_matrices(size: int, k: int, pads, out: int, stride: int, dilation: int,
                  half: bool):
  """(forward [F, size], kernel [F, k], inverse [out, F]) complex64 matrices of one axis.

  forward: the DFT of the unpadded input (its left padding is a phase, folded
  into the inverse). kernel: the conjugate DFT of the (dilated) taps, so that
  X * K is the spectrum of the cross-correlation. inverse: evaluates the
  circular correlation at the output pixels t * stride - lo, 1/n included.
  With half=True, F = n // 2 + 1 (a real signal's half spectrum) and the
  inverse carries the weights (1, 2, ..., 2, 1) whose real part is irfft.
  """
  n = dft_length(size, pads)
  freqs = np.arange(n // 2 + 1 if half else n)
  forward = np.exp(-2j * np.pi * np.outer(freqs, np.arange(size)) / n)
  kernel = np.exp(2j * np.pi * np.outer(freqs, np.arange(k) * dilation) / n)
  reads = np.arange(out) * stride - pads[0]
  inverse = np.exp(2j * np.pi * np.outer(reads, freqs) / n) / n
  if half:
    weights = np.full(len(freqs), 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
      weights[-1] = 1.0
    inverse = inverse * weights
  return tuple(m.astype(np.complex64) for m in (forward, kernel, inverse))


# Maps of at most this many pixels transform their real arrays (the input,
# the kernel and the output gradient) with one real matrix product by the
# 2-D transform [Re E; Im E] (E = the H axis's matrix (x) the W axis's),
# and the kernel gradient's last transform likewise: more flops than the two
# separable complex stages, but one large product on both cores where the
# second separable stage is a batch of tiny ones on one (XLA:CPU runs such
# batched products on one core); faster on small maps only
# (benchmarks/README.md, 2-D real stages for the DFT path).
_DFT_2D_MAX_PIXELS = 256


def dft_2d_stages(h: int, w: int) -> bool:
  """Whether 'dft' transforms the real arrays of an h x w map in one 2-D product."""
  return h * w <= _DFT_2D_MAX_PIXELS


@functools.lru_cache(maxsize=256)
def _dft_real_operators(geometry):
  """Real forms of the 2-D transforms of one geometry, F = F1 * F2 frequencies:

    e  [2F, H*W]     [Re E; Im E]: the input's spectrum, stacked re / im;
    k  [2F, kh*kw]   the same for the kernel taps (K = their 2-D transform);
    gt [2F, Ho*Wo]   [Re I^T; Im I^T]: the output gradient's, I^T g;
    kt [kh*kw, 2F]   [Re K^T, -Im K^T]: Re(K^T Z) = kt @ [Re Z; Im Z].

  E, K, I are Kronecker products of the axes' `_dft_matrices`, rows in the
  frequency-major order (f1, f2) of the separable path.
  """
  fh, kfh, ih, fw, kfw, iw = _dft_operators(geometry)
  e = np.einsum('fh,gw->fghw', fh, fw).reshape(fh.shape[0] * fw.shape[0], -1)
  k = np.einsum('fi,gj->fgij', kfh, kfw).reshape(e.shape[0], -1)
  i = np.einsum('tf,ug->tufg', ih, iw).reshape(-1, e.shape[0])
  stack = lambda m: np.concatenate([m.real, m.imag]).astype(np.float32)
  return (stack(e), stack(k), stack(i.T),
          np.ascontiguousarray(np.concatenate([k.real, -k.imag]).T, np.float32))


def _unstack(a):
  """[2F, N] real, re over im -> [F, N] complex."""
  return jax.lax.complex(a[:a.shape[0] // 2], a[a.shape[0] // 2:])


def _stack(z):
  """[F, N] complex -> [2F, N] real, re over im."""
  return jnp.concatenate([jnp.real(z), jnp.imag(z)])


def _along_leading(m, n: int):
  """m broadcast to n copies: the matrix of a product batched over a leading axis."""
  return np.broadcast_to(m, (n, *m.shape))


def conv(x, kernel, pads, stride: int, dilation: int):
  """Cross-correlation of x [B, H, W, Cin] with kernel [kh, kw, Cin, Cout].

  `pads` are lax's ((lo, hi), (lo, hi)) (negative: a crop). The convolution
  theorem with the transforms as matrix products:

  Layout [H, W, B, C], then frequency-major [F1, F2, B, C]: every product
  contracts a leading axis or is batched over one, so XLA inserts no
  transposes of the spectra; only the input and the output (real, the size of
  the activations) are transposed. The backward is written out the same way
  (`_dft_bwd`), because autodiff's transposes of these einsums put the
  contracted axis last and copy the spectra into place.
  """
  kh, kw = kernel.shape[:2]
  x, ((pt, pb), (pl, pr)) = _crop_negative_padding(x, pads)
  h, w = x.shape[1:3]
  ho = (h + pt + pb - (kh - 1) * dilation - 1) // stride + 1
  wo = (w + pl + pr - (kw - 1) * dilation - 1) // stride + 1
  # Static: the shapes and dtypes the backward needs besides the spectra, and
  # whether the real arrays take the 2-D stages (decided once, here, so that
  # the forward and the backward agree).
  geometry = ((pt, pb), (pl, pr), ho, wo, stride, dilation, (h, w, kh, kw),
              x.dtype, kernel.dtype, dft_2d_stages(h, w))
  return _dft_core(x, kernel, geometry)


def _dft_operators(geometry):
  """(fh, kfh, ih, fw, kfw, iw): `_dft_matrices` of the H and the W axis."""
  pads_h, pads_w, ho, wo, stride, dilation, (h, w, kh, kw) = geometry[:7]
  return (_dft_matrices(h, kh, pads_h, ho, stride, dilation, False)
          + _dft_matrices(w, kw, pads_w, wo, stride, dilation, True))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _dft_core(x, kernel, geometry):
  return _dft_fwd(x, kernel, geometry)[0]


def _dft_fwd(x, kernel, geometry):
  fh, kfh, ih, fw, kfw, iw = _dft_operators(geometry)
  n1, m2, ho = fh.shape[0], fw.shape[0], ih.shape[0]
  b, h, w, c = x.shape
  kh, kw, _, o = kernel.shape
  c64 = jnp.complex64
  two_d = geometry[9]
  if two_d:
    e, k2, _, _ = _dft_real_operators(geometry[:7])
    xt = jnp.transpose(x, (1, 2, 0, 3)).reshape(h * w, b * c).astype(jnp.float32)
    xs = _unstack(e @ xt).reshape(n1, m2, b, c)
    flat_k = kernel.reshape(kh * kw, c * o).astype(jnp.float32)
    ks = _unstack(k2 @ flat_k).reshape(n1, m2, c, o)
  else:
    xs = jnp.einsum('fh,hwbc->fwbc', fh, jnp.transpose(x, (1, 2, 0, 3)).astype(c64))
    xs = jnp.einsum('fgw,fwbc->fgbc', _along_leading(fw, n1), xs)  # [n1, m2, B, C]
    ks = jnp.einsum('fi,ijco->fjco', kfh, kernel.astype(c64))
    ks = jnp.einsum('fgj,fjco->fgco', _along_leading(kfw, n1), ks)  # [n1, m2, C, O]
  ys = jnp.einsum('fgbc,fgco->fgbo', xs, ks)
  ys = jnp.einsum('tf,fgbo->tgbo', ih, ys)  # the output rows: [ho, m2, B, O]
  y = jnp.einsum('tug,tgbo->tubo', _along_leading(iw, ho), ys)
  return jnp.transpose(jnp.real(y), (2, 0, 1, 3)).astype(x.dtype), (xs, ks)


def _dft_bwd(geometry, res, g):
  """y = Re(I (X K)) is real-linear in x and in k; for a real cotangent g:

    G = I^T g,  dx = Re(F^T (G K^T)),  dk = Re(Kdft^T (X^T G)),

  with plain (unconjugated) transposes of the same matrices, each product
  again contracting or batching a leading axis.
  """
  xs, ks = res
  x_dtype, k_dtype, two_d = geometry[7:]
  fh, kfh, ih, fw, kfw, iw = _dft_operators(geometry)
  n1, m2, b, c = xs.shape
  ho, wo, o = g.shape[1], g.shape[2], g.shape[3]
  kh, kw = geometry[6][2:]
  c64 = jnp.complex64
  if two_d:
    _, _, gt, kt = _dft_real_operators(geometry[:7])
    flat_g = jnp.transpose(g, (1, 2, 0, 3)).reshape(ho * wo, b * o).astype(jnp.float32)
    gs = _unstack(gt @ flat_g).reshape(n1, m2, b, o)
  else:
    gs = jnp.einsum('tf,tubo->fubo', ih, jnp.transpose(g, (1, 2, 0, 3)).astype(c64))
    gs = jnp.einsum('fug,fubo->fgbo', _along_leading(iw, n1), gs)  # [n1, m2, B, O]
  dxs = jnp.einsum('fgbo,fgco->fgbc', gs, ks)
  dxs = jnp.einsum('fgw,fgbc->fwbc', _along_leading(fw, n1), dxs)  # [n1, W, B, C]
  dx = jnp.real(jnp.einsum('fh,fwbc->hwbc', fh, dxs))
  dks = jnp.einsum('fgbc,fgbo->fgco', xs, gs)
  if two_d:
    dk = (kt @ _stack(dks.reshape(n1 * m2, c * o))).reshape(kh, kw, c, o)
  else:
    dks = jnp.einsum('fgj,fgco->fjco', _along_leading(kfw, n1), dks)
    dk = jnp.real(jnp.einsum('fi,fjco->ijco', kfh, dks))
  return jnp.transpose(dx, (2, 0, 1, 3)).astype(x_dtype), dk.astype(k_dtype)


_dft_core.defvjp(_dft_fwd, _dft_bwd)
