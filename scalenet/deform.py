"""Deformable convolution (DCN v1, and v2 with a modulation mask).

Tap k = i * kw + j of output pixel (ho, wo) reads the input at

  y = ho * stride_h - pad_h + i * dilation_h + offsets[..., k, 0]
  x = wo * stride_w - pad_w + j * dilation_w + offsets[..., k, 1]

by bilinear interpolation with zeros outside the image (each of the four
corners outside counts as 0), exactly as `torchvision.ops.deform_conv2d`; the
sample is multiplied by mask[..., k] (v2) and contracted with kernel[i, j].

References:
  Dai et al., "Deformable Convolutional Networks", ICCV 2017.
  Zhu et al., "Deformable ConvNets v2", CVPR 2019.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp

from scalenet import _checks

IMPLS = ('vjp', 'gather')
# 'vjp', the implementation, reuses the forward's corner indices and weights
# in a hand-written backward that scatters once (a segment sum over the 4
# corners); 'gather' is the same sampler differentiated by autodiff (a scatter
# per corner through a chain of transposes), kept as the oracle of the
# hand-written backward (tests/test_deform.py) and in the benchmarks.
DEFAULT_IMPL = 'vjp'
# On CPU the sampled columns of the whole batch (and the backward's four
# corner-weighted copies of them) are tens of MB, written once and read back
# at DRAM speed. Sampling a few images at a time, each chunk's forward
# recomputed in its backward (`jax.checkpoint`), keeps them in cache
# (benchmarks/README.md, deformable sampling in cache-sized chunks).
_CHUNK_BYTES = 1 << 20  # Sampled columns per chunk: about one core's L2.


def output_size(size: int, k: int, stride: int, pad: int, dilation: int) -> int:
  return (size + 2 * pad - (dilation * (k - 1) + 1)) // stride + 1


def _sample_gather(x, ys, xs):
  """Bilinear zero-padded sampling by gathers on the channels-last image.

  Args:
    x: [B, H, W, G, Cg]; ys, xs: [B, Ho, Wo, G, K] sampling positions.
  Returns:
    [B, Ho, Wo, G, K, Cg].
  """
  b, h, w, g, cg = x.shape
  # One ring of zeros: every out-of-range corner is clipped onto it.
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
  flat = jnp.moveaxis(xp.reshape(b, (h + 2) * (w + 2), g, cg), 2, 1)  # [B,G,P,Cg]
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  ly, lx = ys - y0, xs - x0
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  out = 0.
  for dy, wy in ((0, 1 - ly), (1, ly)):
    iy = jnp.clip(y0 + dy, -1, h) + 1
    for dx, wx in ((0, 1 - lx), (1, lx)):
      ix = jnp.clip(x0 + dx, -1, w) + 1
      idx = jnp.moveaxis(iy * (w + 2) + ix, 3, 1)  # [B, G, Ho, Wo, K]
      vals = jnp.take_along_axis(flat, idx.reshape(b, g, -1, 1), axis=2)
      vals = jnp.moveaxis(vals.reshape(*idx.shape, cg), 1, 3)  # [B,Ho,Wo,G,K,Cg]
      out = out + vals * (wy * wx)[..., None].astype(x.dtype)
  return out


def _corners(ys, xs, h, w):
  """Flat indices into the zero-ringed [(h+2) * (w+2)] image and the bilinear
  weights of the four corners of every sampling point, and the fractional
  parts (ly, lx) from which the weights' derivatives follow.

  Returns:
    idx [4, ...] int32, wts [4, ...], ly, lx; `...` the shape of ys.
  """
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  ly, lx = ys - y0, xs - x0
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  idx, wts = [], []
  for dy, wy in ((0, 1 - ly), (1, ly)):
    iy = jnp.clip(y0 + dy, -1, h) + 1
    for dx, wx in ((0, 1 - lx), (1, lx)):
      idx.append(iy * (w + 2) + jnp.clip(x0 + dx, -1, w) + 1)
      wts.append(wy * wx)
  return jnp.stack(idx), jnp.stack(wts), ly, lx


def _flat_rows(x, ys):
  """x [B, H, W, G, Cg] -> rows [B*G*(H+2)*(W+2), Cg] and the row offset of
  every (b, g) as an array broadcastable to ys [B, Ho, Wo, G, K]."""
  b, h, w, g, cg = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
  rows = jnp.moveaxis(xp, 3, 1).reshape(-1, cg)
  plane = (h + 2) * (w + 2)
  base = (jnp.arange(b)[:, None] * g + jnp.arange(g)[None, :]) * plane  # [B, G]
  return rows, base[:, None, None, :, None]


@jax.custom_vjp
def _sample_vjp(x, ys, xs):
  """`_sample_gather` with a hand-written backward (see `_sample_vjp_bwd`)."""
  return _sample_vjp_fwd(x, ys, xs)[0]


def _sample_vjp_fwd(x, ys, xs):
  rows, base = _flat_rows(x, ys)
  idx, wts, ly, lx = _corners(ys, xs, x.shape[1], x.shape[2])
  idx = idx + base
  out = sum(rows[idx[c]] * wts[c][..., None].astype(x.dtype) for c in range(4))
  return out, (x, idx, wts, ly, lx)


def _sample_vjp_bwd(res, g):
  """Reuses the forward's corner indices and weights.

  d x: every corner's weighted cotangent rows go back to the pixel they were
  read from, in one segment sum over the four corners. d ys, d xs: the
  derivative of the bilinear weights (+-wx, +-wy) times the corner values,
  contracted with the cotangent over channels.
  """
  x, idx, wts, ly, lx = res
  b, h, w, gr, cg = x.shape
  rows, _ = _flat_rows(x, idx[0])
  data = (g[None] * wts[..., None].astype(g.dtype)).reshape(-1, cg)
  drows = jax.ops.segment_sum(data, idx.reshape(-1), num_segments=rows.shape[0])
  dx = jnp.moveaxis(drows.reshape(b, gr, h + 2, w + 2, cg), 1, 3)[:, 1:-1, 1:-1]
  # <g, value of corner c> for every sampling point: [4, B, Ho, Wo, G, K].
  gv = jnp.stack([jnp.einsum('...c,...c->...', g, rows[idx[c]],
                             preferred_element_type=jnp.float32) for c in range(4)])
  # Corners in the order (y0,x0), (y0,x1), (y1,x0), (y1,x1).
  dys = (gv[2] - gv[0]) * (1 - lx) + (gv[3] - gv[1]) * lx
  dxs = (gv[1] - gv[0]) * (1 - ly) + (gv[3] - gv[2]) * ly
  return dx.astype(x.dtype), dys.astype(ly.dtype), dxs.astype(lx.dtype)


_sample_vjp.defvjp(_sample_vjp_fwd, _sample_vjp_bwd)


def chunk_size(batch: int, column_bytes: int, backend: str | None = None) -> int:
  """Images per chunk for chunk='auto': the whole batch off CPU; on CPU the
  largest divisor of `batch` whose sampled columns (column_bytes per image)
  fit in _CHUNK_BYTES, at least 1."""
  if (backend or jax.default_backend()) != 'cpu':
    return batch
  fits = [c for c in range(1, batch + 1) if batch % c == 0 and c * column_bytes <= _CHUNK_BYTES]
  return max(fits, default=1)


def _check_chunk(chunk, batch: int) -> int:
  """A chunk given by the caller, as an int: a positive divisor of the batch, else a ValueError."""
  if (isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1
      or batch % chunk):
    raise ValueError(f"deform_conv chunk must be 'auto' or a positive divisor of the batch "
                     f'size {batch}; got {chunk!r}.')
  return int(chunk)


def deform_conv(x: jax.Array, offsets: jax.Array, kernel: jax.Array, *,
                mask: jax.Array | None = None, stride=1, padding=0, dilation=1,
                impl: str = DEFAULT_IMPL, chunk: int | str = 'auto') -> jax.Array:
  """Deformable convolution v1 (mask=None) or v2 (with a modulation mask).

  Args:
    x: images [B, H, W, Cin].
    offsets: [B, Ho, Wo, kh*kw, 2] holding (dy, dx) per tap in row-major tap
      order, or [B, Ho, Wo, G, kh*kw, 2] for G offset groups (channel c uses
      group c // (Cin / G), as torchvision).
    kernel: [kh, kw, Cin, Cout].
    mask: None, or [B, Ho, Wo, kh*kw] ([B, Ho, Wo, G, kh*kw] with groups).
    stride, padding, dilation: int or (h, w) pair, as in torchvision.
    impl: 'vjp' (the gather with a hand-written backward) or 'gather' (its
      autodiff oracle): same result and gradients, different speed.
    chunk: images sampled at a time, a divisor of B, each chunk's forward
      recomputed in the backward; 'auto' (`chunk_size`): whole batch off CPU,
      cache-sized chunks on CPU. Same result and gradients to float32
      rounding; only speed and memory differ.

  Returns:
    [B, Ho, Wo, Cout].

  Raises:
    ValueError: wrong ranks or shapes, groups not dividing Cin, unknown impl,
      a chunk that does not divide B.
  """
  _checks.check_rank(x, 4, 'deform_conv input', '[B, H, W, Cin]')
  _checks.check_floating(x, 'deform_conv input')
  _checks.check_rank(kernel, 4, 'deform_conv kernel', '[kh, kw, Cin, Cout]')
  _checks.check_rank(offsets, (5, 6), 'deform_conv offsets',
                     '[B, Ho, Wo, kh*kw, 2] or [B, Ho, Wo, G, kh*kw, 2]')
  if impl not in IMPLS:
    raise ValueError(f'unknown deform_conv impl {impl!r}; choose from {IMPLS}.')
  sh, sw = _checks.pair(stride, 'stride')
  ph, pw = _checks.pair(padding, 'padding')
  dh, dw = _checks.pair(dilation, 'dilation')
  if min(sh, sw, dh, dw) < 1:
    raise ValueError('stride and dilation must be >= 1.')
  b, h, w, cin = x.shape
  kh, kw, kcin, cout = kernel.shape
  if kcin != cin:
    raise ValueError(f'deform_conv kernel expects Cin={kcin} but the input has {cin}.')
  ho, wo = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
  if offsets.ndim == 5:
    offsets = offsets[:, :, :, None]
    mask = None if mask is None else mask[:, :, :, None]
  groups = offsets.shape[3]
  expect = (b, ho, wo, groups, kh * kw, 2)
  if offsets.shape != expect:
    raise ValueError(f'deform_conv offsets must have shape {expect} (without the '
                     f'group axis if G=1); got {offsets.shape}.')
  if mask is not None and mask.shape != expect[:-1]:
    raise ValueError(f'deform_conv mask must have shape {expect[:-1]} (without the '
                     f'group axis if G=1); got {mask.shape}.')
  if cin % groups:
    raise ValueError(f'offset groups ({groups}) must divide the input channels ({cin}).')

  # Regular grid positions of every tap, then the learned displacement.
  ky, kx = jnp.meshgrid(jnp.arange(kh) * dh, jnp.arange(kw) * dw, indexing='ij')
  base_y = (jnp.arange(ho) * sh - ph)[:, None, None] + ky.reshape(1, 1, -1)
  base_x = (jnp.arange(wo) * sw - pw)[None, :, None] + kx.reshape(1, 1, -1)
  offsets = offsets.astype(jnp.float32)
  ys = base_y[None, :, :, None] + offsets[..., 0]  # [B, Ho, Wo, G, K]
  xs = base_x[None, :, :, None] + offsets[..., 1]

  xg = x.reshape(b, h, w, groups, cin // groups)
  kern = kernel.reshape(kh * kw, groups, cin // groups, cout).astype(x.dtype)
  if chunk == 'auto':
    chunk = chunk_size(b, ho * wo * kh * kw * cin * x.dtype.itemsize)
  else:
    chunk = _check_chunk(chunk, b)
  core = functools.partial(_deform_core, kern=kern, impl=impl)
  if chunk == b:
    return core(xg, ys, xs, mask)
  split = lambda a: None if a is None else a.reshape(b // chunk, chunk, *a.shape[1:])
  y = jax.lax.map(jax.checkpoint(lambda args: core(*args)),
                  (split(xg), split(ys), split(xs), split(mask)))
  return y.reshape(b, *y.shape[2:])


def _deform_core(xg, ys, xs, mask, kern, impl):
  """Samples [B, H, W, G, Cg] at ys, xs [B, Ho, Wo, G, K], modulates, contracts
  with kern [K, G, Cg, Cout]: [B, Ho, Wo, Cout]."""
  sample = {'gather': _sample_gather, 'vjp': _sample_vjp}[impl]
  cols = sample(xg, ys, xs)  # [B, Ho, Wo, G, K, Cg]
  if mask is not None:
    cols = cols * mask[..., None].astype(cols.dtype)
  return jnp.einsum('bhwgkc,kgco->bhwo', cols.astype(xg.dtype), kern)
