"""2-D convolution of NHWC images with HWIO kernels: the one entry point models use.

Contract: `conv2d(x, kernel, padding=..., stride=..., dilation=...)` equals
`lax.conv_general_dilated` with the same arguments (NHWC / HWIO), in value
and gradients, to float32 rounding, whatever path computes it:

  * 'direct': `lax.conv_general_dilated`.
  * 'dft': the convolution theorem with matrix-product transforms
    (`scalenet.dft_conv`); its cost hardly depends on the kernel size.

`method='auto'` picks a path per call from the static shapes at trace time,
with a cost model (`choose_method`) rather than a timing at run time, so that
every process makes the same choice whatever the machine load; on GPU it is
'direct'. Where the channel counts are odd sizes (63, 95, ...) 'auto' may
zero-pad the channel axes inside the conv (`padded_channels`): result,
gradients and parameters are those of the unpadded conv.
`benchmarks/compare_torch.py --only layers` prints both paths and the pick
for the zoo's layer shapes.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp

from scalenet import _checks, dft_conv

_DN = ('NHWC', 'HWIO', 'NHWC')
METHODS = ('auto', 'direct', 'dft')
_forced = [None]  # set by `force_method`, read at trace time


@contextlib.contextmanager
def force_method(method: str | None):
  """Within the block, conv2d(method='auto') traces as `method` ('direct' or 'dft').

  For benchmarks and tests that run whole models down one path. Clears JAX's
  compilation caches on entry and exit, so no function traced under another
  choice is reused.
  """
  if method not in (None, 'direct', 'dft'):
    raise ValueError(f"force_method takes None, 'direct' or 'dft'; got {method!r}.")
  previous = _forced[0]
  _forced[0] = method
  jax.clear_caches()
  try:
    yield
  finally:
    _forced[0] = previous
    jax.clear_caches()


def resolve_padding(padding, size, k: int, stride: int, dilation: int):
  """lax-style explicit ((lo, hi), (lo, hi)) padding for a 2-D conv or pooling.

  Args:
    padding: 'SAME', 'VALID', an int, or two (lo, hi) pairs.
    size: (H, W) of the input.
    k: (kh, kw) of the kernel before dilation.
  """
  if isinstance(padding, str):
    if padding == 'VALID':
      return ((0, 0), (0, 0))
    if padding != 'SAME':
      raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs; "
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
  380 -> 384), never tiny counts. 'auto' pads wherever it picks the direct
  path on CPU, because XLA:CPU's direct conv is faster on the rounded counts
  (benchmarks/README.md, the zoo's conv layers).
  """
  up = -(-c // 32) * 32
  return up if c >= 32 and (up - c) * 16 <= c else c


# Cost model (CPU): seconds = flops / rate, for forward+backward (training is
# what matters). The rates are fitted to XLA:CPU timings of both paths on the
# model zoo's layer shapes (benchmarks/README.md). They decide the clear cases
# (3x3: direct; 13x13-17x17: DFT); near the crossover (7x7 with 32-95
# channels) the two paths cost about the same, so a wrong pick costs little.
_DIRECT_RATE = 50e9  # XLA:CPU's direct conv, >= 8 input channels
_DIRECT_RATE_THIN = 20e9  # fewer input channels (the first layer)
# A kernel larger than the input (e.g. 15x15 on a 14x14 map) collapses the
# rate of XLA:CPU's direct conv.
_DIRECT_RATE_COLLAPSED = 4e9
# 'dft': the rate of its matrix products (complex, 8 real flops per
# multiply-add), fitted on the zoo's layer shapes like the rates above.
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
    n1, n2 = dft_conv.dft_length(h, (pt, pb)), dft_conv.dft_length(w, (pl, pr))
    m2 = n2 // 2 + 1
    macs = (n1 * h * w * b * cin + n1 * m2 * w * b * cin  # the input's transforms
            + n1 * (kh + m2) * kw * cin * cout  # the kernel's
            + n1 * m2 * b * cin * cout  # the contraction over input channels
            + ho * m2 * (n1 + wo) * b * cout)  # the inverse at the output pixels
    return 3 * 8 * macs / _DFT_RATE
  raise ValueError(f"cost: method must be 'direct' or 'dft'; got {method!r}.")


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
    method: 'auto' (cost model, see `choose_method`), 'direct' or 'dft'.
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
  fn = {'direct': _direct, 'dft': dft_conv.conv}[method]
  y = fn(x, kernel, pads, stride, dilation)
  return y[..., :cout] if y.shape[-1] != cout else y
