"""2-D convolution of NHWC images with HWIO kernels: the one entry point models use.

  conv2d(x, kernel, padding=...) == lax.conv_general_dilated(x, kernel, ...)

Every model of the published scale-MNIST table calls this function for its
spatial convolutions, so a faster path for a layer shape changes every model
at once. Three paths compute the same cross-correlation:

  * 'direct': `lax.conv_general_dilated`.
  * 'dft': the convolution theorem with the discrete Fourier transforms
    written as small dense matrix products (`_dft`), all in a
    frequency-major layout [F1, F2, B, C]: a transform along H, one along W
    (half spectrum), the contraction over input channels as one batched
    matrix product per frequency, and an inverse that evaluates only the
    output pixels (stride and padding offset are in its matrix). Its cost
    hardly depends on the kernel size, so it wins for the 13x13-17x17
    kernels of SESN/DISCO, where XLA:CPU's direct convolution collapses
    (speed issue: 23.6 s against 0.39 s forward for one SESN layer). On
    small maps the transforms of real arrays (input, kernel, output
    gradient) are one real product with the 2-D transform matrix instead
    (`dft_2d_stages`).
  * 'fft': the same theorem with `jnp.fft.rfft2`/`irfft2` on a
    channels-first layout. Kept for comparison: on XLA:CPU the transposes
    that its einsum needs between the channels-first FFT layout and a
    frequency-major contraction took a third of an SES model's step, and
    XLA's FFT is no faster than the matrix products at these sizes, so
    'dft' was 2-3x faster on every measured layer (benchmarks/README.md);
    'auto' never picks it.

`method='auto'` picks one per call from the static shapes at trace time with
a cost model (`choose_method`), not a timing: the choice must be the same in
every process and under any machine load (tests pin it, jit traces it once),
and a one-off timing on this shared 2-core machine would flip with the load
of the other processes. The model's constants were measured on that CPU
(`benchmarks/compare_torch.py --only layers` prints both paths and the
model's pick for the model zoo's layer shapes). On GPU, 'auto' is 'direct'
(cuDNN chooses its own algorithms, FFT among them).

Where the channel counts are odd sizes (63, 95, 252 = 4 x 63, ...), 'auto'
may zero-pad the channel axes internally (`padded_channels`): the result, its
gradients and the parameters are exactly those of the unpadded conv.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from scalenet import _checks

_DN = ('NHWC', 'HWIO', 'NHWC')
METHODS = ('auto', 'direct', 'dft', 'fft')
_forced = [None]  # set by `force_method`, read at trace time


@contextlib.contextmanager
def force_method(method: str | None):
  """Within the block, conv2d(method='auto') traces as `method` ('direct'/'dft'/'fft').

  For benchmarks and tests that run whole models down one path. Clears JAX's
  compilation caches on entry and exit, so no function traced under another
  choice is reused.
  """
  if method not in (None, 'direct', 'dft', 'fft'):
    raise ValueError(f"force_method takes None, 'direct', 'dft' or 'fft'; got {method!r}.")
  previous = _forced[0]
  _forced[0] = method
  jax.clear_caches()
  try:
    yield
  finally:
    _forced[0] = previous
    jax.clear_caches()


def resolve_padding(padding, size, k: int, stride: int, dilation: int):
  """lax-style explicit ((lo, hi), (lo, hi)) padding for a 2-D conv.

  Args:
    padding: 'SAME', 'VALID', an int, or two (lo, hi) pairs.
    size: (H, W) of the input.
    k: (kh, kw) of the kernel before dilation.
  """
  if isinstance(padding, str):
    if padding == 'VALID':
      return ((0, 0), (0, 0))
    if padding != 'SAME':
      raise ValueError(f"conv2d padding must be 'SAME', 'VALID', an int or pairs; "
                       f'got {padding!r}.')
    pads = []
    for n, kk in zip(size, k):
      eff = (kk - 1) * dilation + 1
      out = -(-n // stride)
      total = max((out - 1) * stride + eff - n, 0)
      pads.append((total // 2, total - total // 2))
    return tuple(pads)
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _fft_size(n: int) -> int:
  """Smallest even 2,3,5,7-smooth integer >= n (sizes pocketfft/cuFFT do fast)."""
  m = n + n % 2
  while True:
    r = m
    for p in (2, 3, 5, 7):
      while r % p == 0:
        r //= p
    if r == 1:
      return m
    m += 2


def trim_taps(k: int, size: int, pads, stride: int, dilation: int):
  """Drops kernel taps that only ever read zero padding: (first tap, taps, pads).

  Tap i of output t reads input row i * dilation - lo + t * stride. A tap
  whose rows all fall outside [0, size) contributes nothing (a dilated 7x7
  kernel at dilation 4 on a 7x7 map keeps its middle 3x3), so the conv with
  the remaining taps and the padding shifted to match is the same function.
  """
  lo, hi = pads
  eff = (k - 1) * dilation + 1
  out = (size + lo + hi - eff) // stride + 1
  useful = [i for i in range(k)
            if i * dilation - lo + (out - 1) * stride >= 0 and i * dilation - lo <= size - 1]
  if out < 1 or not useful or len(useful) == k:
    return 0, k, (lo, hi)
  i0, kk = useful[0], useful[-1] - useful[0] + 1
  new_lo = lo - i0 * dilation
  new_hi = (out - 1) * stride + (kk - 1) * dilation + 1 - size - new_lo
  return i0, kk, (new_lo, new_hi)


def padded_channels(c: int) -> int:
  """The channel count 'auto' computes with: c, or c rounded up to a multiple of 32.

  Rounds up only where that adds at most 1/16 (63 -> 64, 95 -> 96, 252 -> 256,
  380 -> 384), never tiny counts. XLA:CPU's direct conv is faster on the
  rounded counts (benchmarks/README.md, conv layers, batch 32, fwd+bwd: 7x7
  63->95 39.8 -> 33.2 ms, 32->63 48.4 -> 40.8 ms, 15x15 32->63 at 28x28 780
  -> 648 ms), so 'auto' pads wherever it picks the direct path on CPU.
  """
  up = -(-c // 32) * 32
  return up if c >= 32 and (up - c) * 16 <= c else c


# Cost model (CPU): seconds = flops / rate, for forward+backward (training is
# what matters). Rates were fitted to timings of both paths on the 2-core EPYC
# (batch 16, layer shapes of the model zoo, under load from other jobs). They
# decide the clear cases right (3x3: direct; 13x13-17x17: FFT, 3-100x apart);
# near the crossover (7x7 with 32-95 channels) the two paths are within ~30%
# of each other, so a wrong pick there costs little.
_DIRECT_RATE = 50e9  # XLA:CPU's direct conv, >= 8 input channels
_DIRECT_RATE_THIN = 20e9  # fewer input channels (the first layer)
# A kernel larger than the input collapses XLA:CPU's direct conv (15x15 on a
# 14x14 map: 4 s at batch 16, 4 GFLOP/s; 13x13 on the same map: 40 GFLOP/s).
_DIRECT_RATE_COLLAPSED = 4e9
_SPECTRAL_RATE = 10e9  # the complex contraction over input channels
_FFT_RATE = 5e9  # 2.5 n log2 n flops per 2-D FFT, with its transposes and crops
# 'dft': its matrix products (complex, 8 real flops per multiply-add). Fitted
# on 14 layer shapes of the zoo at batch 128 (fwd+bwd, machine loaded by a
# training run as when the rates above were fitted): 23-37 GFLOP/s.
_DFT_RATE = 30e9


def cost(method: str, x_shape, k_shape, pads, stride: int, dilation: int) -> float:
  """Modelled seconds of conv2d forward+backward on XLA:CPU for these shapes."""
  b, h, w, cin = x_shape
  kh, kw, _, cout = k_shape
  (pt, pb), (pl, pr) = pads
  ekh, ekw = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
  hp, wp = h + pt + pb, w + pl + pr
  ho, wo = (hp - ekh) // stride + 1, (wp - ekw) // stride + 1
  if method == 'direct':
    flops = 3 * 2 * b * ho * wo * kh * kw * cin * cout
    rate = _DIRECT_RATE if cin >= 8 else _DIRECT_RATE_THIN
    if kh > h or kw > w:
      rate = _DIRECT_RATE_COLLAPSED
    return flops / rate
  if method == 'dft':
    n1, n2 = dft_length(h, (pt, pb)), dft_length(w, (pl, pr))
    m2 = n2 // 2 + 1
    macs = (n1 * h * w * b * cin + n1 * m2 * w * b * cin  # the input's transforms
            + n1 * (kh + m2) * kw * cin * cout  # the kernel's
            + n1 * m2 * b * cin * cout  # the contraction over input channels
            + ho * m2 * (n1 + wo) * b * cout)  # the inverse at the output pixels
    return 3 * 8 * macs / _DFT_RATE
  n1, n2 = _fft_size(hp), _fft_size(wp)
  freq = n1 * (n2 // 2 + 1)
  # fwd: X K; bwd: dY conj(K) and sum_b conj(X) dY; 8 real flops per complex MAC.
  spectral = 3 * 8 * b * freq * cin * cout
  # fwd: FFT of x, of k, inverse of y; bwd: FFT of dy, inverses of dx and dk.
  ffts = 2 * (b * cin + cin * cout + b * cout)
  fft_flops = ffts * 2.5 * n1 * n2 * math.log2(n1 * n2)
  return spectral / _SPECTRAL_RATE + fft_flops / _FFT_RATE


def choose_method(x_shape, k_shape, pads, stride: int = 1, dilation: int = 1,
                  backend: str | None = None) -> str:
  """'direct' or 'dft' for these static shapes (see the module docstring)."""
  backend = backend or jax.default_backend()
  if backend != 'cpu':
    return 'direct'
  args = (x_shape, k_shape, pads, stride, dilation)
  return 'dft' if cost('dft', *args) < cost('direct', *args) else 'direct'


def _direct(x, kernel, pads, stride, dilation):
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), pads, rhs_dilation=(dilation, dilation),
      dimension_numbers=_DN)


def _crop_negative_padding(x, pads):
  """Negative padding crops the input (as in lax): (cropped x, padding >= 0)."""
  (pt, pb), (pl, pr) = pads
  h, w = x.shape[1:3]
  x = x[:, max(-pt, 0):h + min(pb, 0), max(-pl, 0):w + min(pr, 0)]
  return x, tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)


def _fft(x, kernel, pads, stride, dilation):
  """Cross-correlation by FFT: circular convolution with the flipped kernel.

  With F = the padded input's size (or more) there is no wrap-around where the
  output is read: output[i] = circ(x_pad, flip(k))[i + kh - 1]. The left
  padding is not materialised: it is a shift of where the output is read.
  """
  b, h, w, cin = x.shape
  kh, kw, _, cout = kernel.shape
  if dilation > 1:
    dil = jnp.zeros(((kh - 1) * dilation + 1, (kw - 1) * dilation + 1, cin, cout),
                    kernel.dtype)
    kernel = dil.at[::dilation, ::dilation].set(kernel)
    kh, kw = kernel.shape[:2]
  x, ((pt, pb), (pl, pr)) = _crop_negative_padding(x, pads)
  h, w = x.shape[1:3]
  hp, wp = h + pt + pb, w + pl + pr
  ho, wo = hp - kh + 1, wp - kw + 1
  if pt > kh - 1 or pl > kw - 1:  # only the excess over the shift is padded
    ex_t, ex_l = max(pt - kh + 1, 0), max(pl - kw + 1, 0)
    x = jnp.pad(x, ((0, 0), (ex_t, 0), (ex_l, 0), (0, 0)))
    pt, pl = pt - ex_t, pl - ex_l
  n1, n2 = _fft_size(hp), _fft_size(wp)
  # FFTs act on the trailing axes: channels first.
  xf = jnp.fft.rfft2(jnp.moveaxis(x, 3, 1), s=(n1, n2))  # [B, Cin, n1, n2r]
  kf = jnp.fft.rfft2(jnp.transpose(kernel[::-1, ::-1], (2, 3, 0, 1)), s=(n1, n2))
  yf = jnp.einsum('bihw,iohw->bohw', xf, kf)
  y = jnp.fft.irfft2(yf, s=(n1, n2))  # [B, Cout, n1, n2]
  r0, c0 = kh - 1 - pt, kw - 1 - pl
  y = y[:, :, r0:r0 + ho:stride, c0:c0 + wo:stride]
  return jnp.moveaxis(y, 1, 3).astype(x.dtype)


def dft_length(size: int, pads) -> int:
  """The transform length of 'dft' along an axis: size + max(lo, hi) padding.

  Circular correlation of length n reads input index m mod n where linear
  correlation reads m, for m in [-lo, size + hi). Both agree when every m
  outside [0, size) lands on a zero of the length-n signal, i.e. when
  n >= size + lo and n >= size + hi. (The FFT path pads to size + lo + hi
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
# (benchmarks/README.md, sixth pass).
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


def _dft(x, kernel, pads, stride, dilation):
  """Cross-correlation by the convolution theorem with matrix-product DFTs.

  Layout [H, W, B, C], then frequency-major [F1, F2, B, C]: every product
  contracts a leading axis or is batched over one, so XLA inserts no
  transposes of the spectra; only the input and the output (real, the size of
  the activations) are transposed. The backward is written out the same way
  (`_dft_bwd`): autodiff's transposes of these einsums put the contracted
  axis last and copied the spectra into place (a quarter of an SES model's
  step).
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


def _pad_channels(x, kernel):
  cin, cout = kernel.shape[2], kernel.shape[3]
  pin, pout = padded_channels(cin), padded_channels(cout)
  if pin != cin:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, pin - cin)))
  if pin != cin or pout != cout:
    kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, pin - cin), (0, pout - cout)))
  return x, kernel


def _trimmed(x_shape, k_shape, padding, stride: int, dilation: int):
  """((first row, rows), (first col, cols)) of the kernel taps kept, and the padding
  that goes with them: exactly the conv (see `trim_taps`)."""
  pads = resolve_padding(padding, x_shape[1:3], k_shape[:2], stride, dilation)
  trims = [trim_taps(k, n, p, stride, dilation)
           for k, n, p in zip(k_shape[:2], x_shape[1:3], pads)]
  return tuple(t[:2] for t in trims), tuple(t[2] for t in trims)


def auto_method(x_shape, k_shape, padding='SAME', stride: int = 1, dilation: int = 1,
                backend: str | None = None) -> str:
  """The path conv2d(method='auto') takes for these shapes (after trimming taps)."""
  taps, pads = _trimmed(x_shape, k_shape, padding, stride, dilation)
  (_, kh), (_, kw) = taps
  return choose_method(x_shape, (kh, kw, *k_shape[2:]), pads, stride, dilation, backend)


def conv2d(x: jax.Array, kernel: jax.Array, *, padding='SAME', stride: int = 1,
           dilation: int = 1, method: str = 'auto', pad_channels: bool | None = None
           ) -> jax.Array:
  """Cross-correlation of x [B, H, W, Cin] with kernel [kh, kw, Cin, Cout].

  Args:
    x: images [B, H, W, Cin].
    kernel: [kh, kw, Cin, Cout].
    padding: 'SAME', 'VALID', an int (both sides of both axes) or lax pairs.
    stride: spatial stride.
    dilation: kernel dilation.
    method: 'auto' (cost model, see `choose_method`), 'direct', 'dft' or 'fft'.
    pad_channels: zero-pad the channel axes to `padded_channels` inside the
      conv (same result); None: only where 'auto' chose the direct path on CPU.

  Returns:
    [B, H', W', Cout] in x's dtype.

  Raises:
    ValueError: wrong ranks, mismatched channels, an unknown method or padding.
  """
  _checks.check_rank(x, 4, 'conv2d input', '[B, H, W, C]')
  _checks.check_rank(kernel, 4, 'conv2d kernel', '[kh, kw, Cin, Cout]')
  if x.shape[-1] != kernel.shape[2]:
    raise ValueError(f'conv2d: input has {x.shape[-1]} channels but the kernel expects '
                     f'{kernel.shape[2]}.')
  if method not in METHODS:
    raise ValueError(f'conv2d method must be one of {METHODS}; got {method!r}.')
  stride = _checks.positive_int(stride, 'stride')
  dilation = _checks.positive_int(dilation, 'dilation')
  taps, pads = _trimmed(x.shape, kernel.shape, padding, stride, dilation)
  (r0, kh), (c0, kw) = taps
  kernel = kernel.astype(x.dtype)[r0:r0 + kh, c0:c0 + kw]
  auto = method == 'auto'
  if auto:
    method = _forced[0] or choose_method(x.shape, kernel.shape, pads, stride, dilation)
  if pad_channels is None:
    pad_channels = auto and method == 'direct' and jax.default_backend() == 'cpu'
  cout = kernel.shape[3]
  if pad_channels:
    x, kernel = _pad_channels(x, kernel)
  fn = {'direct': _direct, 'dft': _dft, 'fft': _fft}[method]
  y = fn(x, kernel, pads, stride, dilation)
  return y[..., :cout] if y.shape[-1] != cout else y
