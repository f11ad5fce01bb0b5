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

import jax
import jax.numpy as jnp

from scalenet import _checks

IMPLS = ('gather', 'map_coordinates')
# Measured on CPU (benchmarks/README.md), DCN-sized layer: map_coordinates
# 14.7 ms forward vs 48.3 ms for gather; forward+backward 96 vs 87 ms. The
# 3x faster forward (evaluation, equivariance curves) outweighs the 10%.
DEFAULT_IMPL = 'map_coordinates'


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


def _sample_map_coordinates(x, ys, xs):
  """The same sampling through jax.scipy.ndimage.map_coordinates (order 1)."""
  def one_plane(img, yy, xx):  # img [H, W]; yy, xx [Ho, Wo, K]
    return jax.scipy.ndimage.map_coordinates(img, [yy, xx], order=1,
                                             mode='constant', cval=0.)
  per_channel = jax.vmap(one_plane, in_axes=(-1, None, None), out_axes=-1)
  per_group = jax.vmap(per_channel, in_axes=(2, 2, 2), out_axes=2)
  per_batch = jax.vmap(per_group)
  return per_batch(x, ys, xs)


def deform_conv(x: jax.Array, offsets: jax.Array, kernel: jax.Array, *,
                mask: jax.Array | None = None, stride=1, padding=0, dilation=1,
                impl: str = DEFAULT_IMPL) -> jax.Array:
  """Deformable convolution v1 (mask=None) or v2 (with a modulation mask).

  Args:
    x: images [B, H, W, Cin].
    offsets: [B, Ho, Wo, kh*kw, 2] holding (dy, dx) per tap in row-major tap
      order, or [B, Ho, Wo, G, kh*kw, 2] for G offset groups (channel c uses
      group c // (Cin / G), as torchvision).
    kernel: [kh, kw, Cin, Cout].
    mask: None, or [B, Ho, Wo, kh*kw] ([B, Ho, Wo, G, kh*kw] with groups).
    stride, padding, dilation: int or (h, w) pair, as in torchvision.
    impl: 'gather' or 'map_coordinates' (same result, different speed).

  Returns:
    [B, Ho, Wo, Cout].

  Raises:
    ValueError: wrong ranks or shapes, groups not dividing Cin, unknown impl.
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
  sample = _sample_gather if impl == 'gather' else _sample_map_coordinates
  cols = sample(xg, ys, xs)  # [B, Ho, Wo, G, K, Cg]
  if mask is not None:
    cols = cols * mask[..., None].astype(cols.dtype)
  kern = kernel.reshape(kh * kw, groups, cin // groups, cout).astype(x.dtype)
  return jnp.einsum('bhwgkc,kgco->bhwo', cols.astype(x.dtype), kern)
