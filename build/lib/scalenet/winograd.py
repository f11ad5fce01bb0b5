"""3x3 'SAME' convolution by Winograd's minimal filtering F(2x2, 3x3), in batch chunks.

  conv3x3(x, kernel, dilation=d) == lax.conv_general_dilated(
      x, kernel, (1, 1), ((d, d), (d, d)), rhs_dilation=(d, d))

Each 2x2 block of outputs is computed from the 4x4 input tile around it as

  Y = A^T [(G g G^T) * (B^T d B)] A

(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR
2016): 16 multiplications per tile and channel pair instead of 36, as 16
matrix products [tiles, Cin] x [Cin, Cout], one per tile position. The
input and output transforms are sums of strided slices, all exact in
float32 but for rounding (the entries of B, A are 0, +-1; of G, 0, +-1/2, 1).

Why it is here: XLA:CPU's direct 3x3 conv runs at about half oneDNN's speed
(benchmarks/README.md), and the transforms are cheap only when their buffers stay in
cache. So the batch is processed a few images at a time (`lax.map`), and the
backward is written out (`jax.custom_vjp`): the input gradient is the same
chunked Winograd conv of the output gradient with the flipped, transposed
kernel, and the kernel gradient is accumulated in the transformed domain,
dU = sum over chunks of V^T dM, and brought back once, dk = G^T dU G.

A dilation d is d*d independent undilated convs on the polyphase
sub-images (x[i::d, j::d]), stacked into the batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from scalenet import _checks, _chunking

# F(2x2, 3x3) with interpolation points 0, 1, -1, infinity.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
_T = 4  # input tile side
_M = 2  # output tile side

# Transformed input of one chunk, [16, tiles, C] float32: chunks of 3-6 MB
# were the fastest in benchmarks/winograd_bench.py (at 28x28, 32 -> 32: 3 MB
# 50 ms, 6 MB 56 ms, 13 MB 82 ms fwd+bwd at batch 128; direct conv 75 ms).
_CHUNK_BYTES = 6 << 20


def _combine(coefs, arrays):
  """sum_i coefs[i] * arrays[i] over the non-zero coefficients (trace-time constants)."""
  out = None
  for c, a in zip(coefs, arrays):
    if c == 0:
      continue
    term = a if c == 1 else -a if c == -1 else float(c) * a
    out = term if out is None else out + term
  return out if out is not None else jnp.zeros_like(arrays[0])


def _input_transform(x):
  """x [B, H, W, C] (H, W even) -> V [16, B * H/2 * W/2, C]: B^T d B of every
  4x4 tile of the zero-padded input, tiles 2 apart."""
  b, h, w, c = x.shape
  nh, nw = h // _M, w // _M
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = [xp[:, u:u + _M * nh:_M] for u in range(_T)]  # [B, nh, W + 2, C]
  out = []
  for a in range(_T):
    r = _combine(_BT[a], rows)
    cols = [r[:, :, v:v + _M * nw:_M] for v in range(_T)]  # [B, nh, nw, C]
    out += [_combine(_BT[b_], cols) for b_ in range(_T)]
  return jnp.stack(out).reshape(_T * _T, b * nh * nw, c)


def _output_transform(m, b: int, nh: int, nw: int):
  """M [16, B * nh * nw, O] -> y [B, 2 nh, 2 nw, O]: A^T M A of every tile."""
  m = m.reshape(_T, _T, b, nh, nw, -1)
  rows = []
  for i in range(_M):
    r = [_combine(_AT[i], [m[a, b_] for a in range(_T)]) for b_ in range(_T)]
    rows.append(jnp.stack([_combine(_AT[j], r) for j in range(_M)], axis=3))
  y = jnp.stack(rows, axis=2)  # [B, nh, 2, nw, 2, O]
  return y.reshape(b, _M * nh, _M * nw, -1)


def _output_transform_t(dy):
  """The adjoint of `_output_transform`: dy [B, H, W, O] -> dM [16, B * H/2 * W/2, O]."""
  b, h, w, o = dy.shape
  t = dy.reshape(b, h // _M, _M, w // _M, _M, o)
  tiles = [[t[:, :, i, :, j] for j in range(_M)] for i in range(_M)]
  out = []
  for a in range(_T):
    r = [_combine(_AT[:, a], [tiles[i][j] for i in range(_M)]) for j in range(_M)]
    out += [_combine(_AT[:, b_], r) for b_ in range(_T)]
  return jnp.stack(out).reshape(_T * _T, -1, o)


def _kernel_transform(k):
  """k [3, 3, C, O] -> U [16, C, O]: G g G^T per channel pair."""
  return jnp.einsum('ai,ijco,bj->abco', _G, k, _G).reshape(_T * _T, *k.shape[2:])


def _kernel_transform_t(du):
  """The adjoint of `_kernel_transform`: dU [16, C, O] -> dk [3, 3, C, O]."""
  return jnp.einsum('ai,abco,bj->ijco', _G, du.reshape(_T, _T, *du.shape[1:]), _G)


def _chunks(x, chunk: int):
  return x.reshape(x.shape[0] // chunk, chunk, *x.shape[1:])


def _forward(x, u, chunk: int):
  """y = conv of x [B, H, W, C] (H, W even) with the transformed kernel u, chunk images at a time."""
  _, h, w, _ = x.shape

  def one(xc):
    m = jnp.einsum('xnc,xco->xno', _input_transform(xc), u)
    return _output_transform(m, chunk, h // _M, w // _M)

  y = jax.lax.map(one, _chunks(x, chunk))
  return y.reshape(-1, *y.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_even(x, kernel, chunk: int):
  return _forward(x, _kernel_transform(kernel), chunk)


def _conv_even_fwd(x, kernel, chunk):
  return _conv_even(x, kernel, chunk), (x, kernel)


def _conv_even_bwd(chunk, res, dy):
  x, kernel = res
  # The input gradient of a 'SAME' 3x3 correlation is the 'SAME' correlation
  # of dy with the kernel rotated by 180 degrees and its channels swapped.
  flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
  dx = _forward(dy, _kernel_transform(flipped), chunk)

  def accumulate(du, xs):
    xc, dyc = xs
    v, dm = _input_transform(xc), _output_transform_t(dyc)
    return du + jnp.einsum('xnc,xno->xco', v, dm), None

  du0 = jnp.zeros((_T * _T, *kernel.shape[2:]), x.dtype)
  du, _ = jax.lax.scan(accumulate, du0, (_chunks(x, chunk), _chunks(dy, chunk)))
  return dx.astype(x.dtype), _kernel_transform_t(du).astype(kernel.dtype)


_conv_even.defvjp(_conv_even_fwd, _conv_even_bwd)


def chunk_size(batch: int, tiles_per_image: int, channels: int,
               backend: str | None = None) -> int:
  """Images per chunk for chunk='auto': the whole batch off CPU; on CPU the
  largest divisor of `batch` whose transformed tiles (16 x tiles x channels
  float32 per image) fit in _CHUNK_BYTES, at least 1."""
  per_image = _T * _T * tiles_per_image * channels * 4
  return _chunking.fitting_divisor(batch, per_image, _CHUNK_BYTES, backend)


def padded_size(size: int, dilation: int) -> int:
  """A side of the input as conv3x3 computes it: rounded up to a multiple of 2 dilation."""
  return -(-size // (2 * dilation)) * 2 * dilation


def subimage_tiles(h: int, w: int, dilation: int) -> int:
  """2x2 output tiles of one polyphase sub-image of an h x w input."""
  return padded_size(h, dilation) * padded_size(w, dilation) // (4 * dilation * dilation)


def _to_phases(x, d: int):
  """[B, H, W, C] (H, W multiples of d) -> [B d d, H/d, W/d, C]: x[i::d, j::d] per image."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // d, d, w // d, d, c).transpose(0, 2, 4, 1, 3, 5)
  return x.reshape(b * d * d, h // d, w // d, c)


def _from_phases(y, b: int, d: int):
  """The inverse of `_to_phases`."""
  _, hd, wd, c = y.shape
  y = y.reshape(b, d, d, hd, wd, c).transpose(0, 3, 1, 4, 2, 5)
  return y.reshape(b, hd * d, wd * d, c)


def conv3x3(x: jax.Array, kernel: jax.Array, *, dilation: int = 1,
            chunk: int | str = 'auto') -> jax.Array:
  """'SAME' cross-correlation of x [B, H, W, Cin] with a 3x3 kernel, stride 1.

  Args:
    x: images [B, H, W, Cin], any H, W >= 1.
    kernel: [3, 3, Cin, Cout].
    dilation: kernel dilation d (padding d on every side, as 'SAME').
    chunk: images (polyphase sub-images when d > 1) per chunk: a divisor of
      B * d * d, or 'auto' (`chunk_size`).

  Returns:
    [B, H, W, Cout] in x's dtype, computed in float32 at least; equal to
    lax.conv_general_dilated to float32 rounding (tests/test_winograd.py),
    gradients included.

  Raises:
    ValueError: wrong ranks, a kernel that is not 3x3, mismatched channels, a
      bad dilation or chunk.
  """
  _checks.check_rank(x, 4, 'conv3x3 input', '[B, H, W, C]')
  _checks.check_rank(kernel, 4, 'conv3x3 kernel', '[3, 3, Cin, Cout]')
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f'conv3x3 needs a 3x3 kernel; got {kernel.shape[0]}x{kernel.shape[1]}.')
  if x.shape[-1] != kernel.shape[2]:
    raise ValueError(f'conv3x3: input has {x.shape[-1]} channels but the kernel expects '
                     f'{kernel.shape[2]}.')
  d = _checks.positive_int(dilation, 'dilation')
  b, h, w, _ = x.shape
  # Zeros below and right up to a multiple of 2d: the polyphase grids are
  # then whole and of even size, and the extra rows read as 'SAME' padding.
  hp, wp = padded_size(h, d), padded_size(w, d)
  dtype = jnp.promote_types(x.dtype, jnp.float32)  # no Winograd in half precision
  xp = jnp.pad(x.astype(dtype), ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
  xp = _to_phases(xp, d) if d > 1 else xp
  n = xp.shape[0]
  if chunk == 'auto':
    chunk = chunk_size(n, subimage_tiles(h, w, d), max(kernel.shape[2:]))
  else:
    chunk = _chunking.check_chunk(chunk, n, 'conv3x3', 'the (sub-)image count')
  y = _conv_even(xp, kernel.astype(dtype), chunk)
  y = _from_phases(y, b, d) if d > 1 else y
  return y[:, :h, :w].astype(x.dtype)
