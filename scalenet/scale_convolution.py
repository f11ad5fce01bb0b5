"""Dilated scale convolution with weights tied across scales, and scale pooling.

Output level s mixes input levels s .. s+I-1 with one kernel per interaction
step i, dilated by base**s:

  out[:, s] = sum_{i < I, s + i < S} conv2d(x[:, s + i], kernel[i], dilation=base**s)

If input level k+1 is level k up-sampled by `base`, so is output level k+1 (on
the coarse grid): the layer is equivariant to integer rescalings by `base`.

References:
  Worrall & Welling, "Deep Scale-spaces: Equivariance Over Scale", NeurIPS 2019.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from scalenet import _checks, conv, pooling

IMPLS = ('loop', 'stacked', 'grouped', 'im2col')
# All IMPLS compute the same function; 'loop' is the default because it is
# the fastest on CPU for DSS-sized layers (XLA:CPU's grouped convolutions are
# slow; benchmarks/README.md, ops_bench.py --scale-conv-impls).
DEFAULT_IMPL = 'loop'
_DN = ('NHWC', 'HWIO', 'NHWC')


def dilations(num_scales: int, base) -> tuple[int, ...]:
  """Exact integer dilation of every level: base**s."""
  base = _checks.integer_base(base)
  return tuple(base**s for s in range(num_scales))


def _interaction_stack(x: jax.Array, interaction: int) -> jax.Array:
  """[B, S, H, W, C] -> [B, S, H, W, I*C]: level s holds levels s..s+I-1.

  Levels past the top are zeros, so the sum over i < I with s+i < S becomes
  one conv over I*C input channels.
  """
  s = x.shape[1]
  padded = jnp.pad(x, ((0, 0), (0, interaction - 1), (0, 0), (0, 0), (0, 0)))
  return jnp.concatenate([padded[:, i:i + s] for i in range(interaction)], axis=-1)


def _same_padding(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
  eff = (k - 1) * dilation + 1
  out = -(-size // stride)
  total = max((out - 1) * stride + eff - size, 0)
  return total // 2, total - total // 2


def _conv_level(x, kernel, stride, dilation):
  # conv.conv2d picks the direct or DFT path per shape and drops the taps of
  # large dilations that read only padding.
  return conv.conv2d(x, kernel, padding='SAME', stride=stride, dilation=dilation)


def _scale_conv_loop(x, kernel, dils, stride):
  """One conv per (output level, interaction) pair, summed: no stacked copy.

  x [B, S, H, W, Cin], kernel [I, kh, kw, Cin, Cout] (not folded).
  """
  num_scales, interaction = x.shape[1], kernel.shape[0]
  return jnp.stack([
      sum(_conv_level(x[:, s + i], kernel[i], stride, d)
          for i in range(min(interaction, num_scales - s)))
      for s, d in enumerate(dils)], axis=1)


def _scale_conv_stacked(xs, kernel, dils, stride):
  """One conv per level, the interaction levels stacked into the input channels."""
  return jnp.stack([_conv_level(xs[:, s], kernel, stride, d)
                    for s, d in enumerate(dils)], axis=1)


def _scale_conv_grouped(xs, kernel, dils, stride):
  """One grouped conv: each level's kernel embedded, dilated, in a common grid."""
  b, s, h, w, cin = xs.shape
  kh, kw, _, cout = kernel.shape
  dmax = max(dils)
  big_h, big_w = (kh - 1) * dmax + 1, (kw - 1) * dmax + 1
  pads = [_same_padding(h, big_h, stride, 1), _same_padding(w, big_w, stride, 1)]
  big = []
  for d in dils:
    # Place the dilated kernel where SAME padding at dilation d would put it.
    off_h = pads[0][0] - _same_padding(h, kh, stride, d)[0]
    off_w = pads[1][0] - _same_padding(w, kw, stride, d)[0]
    if min(off_h, off_w) < 0:
      raise NotImplementedError("impl='grouped' needs odd kernel sizes; use 'loop'.")
    emb = jnp.zeros((big_h, big_w, cin, cout), kernel.dtype)
    big.append(emb.at[off_h:off_h + (kh - 1) * d + 1:d,
                      off_w:off_w + (kw - 1) * d + 1:d].set(kernel))
  big = jnp.concatenate(big, axis=-1)  # [K, K, I*Cin, S*Cout]
  grouped = jnp.moveaxis(xs, 1, 3).reshape(b, h, w, s * cin)
  y = jax.lax.conv_general_dilated(grouped, big, (stride, stride), pads,
                                   dimension_numbers=_DN, feature_group_count=s)
  return jnp.moveaxis(y.reshape(*y.shape[:3], s, cout), 3, 1)


def _scale_conv_im2col(xs, kernel, dils, stride):
  """Gathers every level's dilated taps, then one matmul with the tied kernel."""
  b, s, h, w, cin = xs.shape
  kh, kw, _, cout = kernel.shape
  cols = []
  for lv, d in enumerate(dils):
    (pt, pb), (pl, pr) = [_same_padding(n, k, stride, d) for n, k in zip((h, w), (kh, kw))]
    xp = jnp.pad(xs[:, lv], ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho, wo = -(-h // stride), -(-w // stride)
    taps = [xp[:, i * d:i * d + (ho - 1) * stride + 1:stride,
               j * d:j * d + (wo - 1) * stride + 1:stride]
            for i in range(kh) for j in range(kw)]
    cols.append(jnp.stack(taps, axis=3))  # [B, Ho, Wo, kh*kw, I*Cin]
  cols = jnp.stack(cols, axis=1)
  return jnp.einsum('bshwkc,kco->bshwo', cols, kernel.reshape(kh * kw, cin, cout))


def scale_conv(x: jax.Array, kernel: jax.Array, *, base=2, stride: int = 1,
               padding: str = 'SAME', impl: str = DEFAULT_IMPL) -> jax.Array:
  """Dilated scale convolution, weights tied across scales.

  Args:
    x: scale-space tensor [B, S, H, W, Cin], level 0 finest.
    kernel: [I, kh, kw, Cin, Cout]; I (interaction) input levels are mixed
      into each output level, 1 <= I <= S.
    base: positive integer; level s uses dilation base**s exactly.
    stride: spatial stride, the same at every level.
    padding: only 'SAME' (zero padding), so all levels keep one spatial size.
    impl: 'loop' (one conv per level and interaction offset, summed),
      'stacked' (one conv per level over the I stacked input levels),
      'grouped' (one grouped conv with dilated kernels embedded in a common
      grid) or 'im2col' (gather + one matmul). All give the same result;
      they differ in speed.

  Returns:
    [B, S, ceil(H/stride), ceil(W/stride), Cout].

  Raises:
    ValueError: wrong rank, mismatched channels, interaction > S, a
      non-integer base, an unknown padding or impl.
  """
  _checks.check_rank(x, 5, 'scale_conv input', '[B, S, H, W, Cin]')
  _checks.check_rank(kernel, 5, 'scale_conv kernel', '[I, kh, kw, Cin, Cout]')
  _checks.check_floating(x, 'scale_conv input')
  num_scales, cin = x.shape[1], x.shape[-1]
  interaction = kernel.shape[0]
  if kernel.shape[3] != cin:
    raise ValueError(f'scale_conv kernel expects Cin={kernel.shape[3]} channels '
                     f'but the input has {cin}.')
  if not 1 <= interaction <= num_scales:
    raise ValueError(f'interaction (kernel.shape[0] = {interaction}) must be in '
                     f'[1, num_scales = {num_scales}].')
  if padding != 'SAME':
    raise ValueError(f"scale_conv supports padding='SAME' only; got {padding!r}.")
  if impl not in IMPLS:
    raise ValueError(f'unknown scale_conv impl {impl!r}; choose from {IMPLS}.')
  stride = _checks.positive_int(stride, 'stride')
  dils = dilations(num_scales, base)
  kh, kw, _, cout = kernel.shape[1:]
  if impl == 'loop':
    return _scale_conv_loop(x, kernel.astype(x.dtype), dils, stride)
  xs = _interaction_stack(x, interaction)
  # [I, kh, kw, Cin, Cout] -> [kh, kw, I*Cin, Cout], matching _interaction_stack.
  flat = jnp.moveaxis(kernel, 0, 2).reshape(kh, kw, interaction * cin, cout)
  flat = flat.astype(x.dtype)
  fn = {'stacked': _scale_conv_stacked, 'grouped': _scale_conv_grouped,
        'im2col': _scale_conv_im2col}[impl]
  return fn(xs, flat, dils, stride)


def scale_pool(x: jax.Array, mode: str = 'mean', axis: int = 1) -> jax.Array:
  """Pools over the scale axis: [B, S, H, W, C] -> [B, H, W, C].

  Args:
    x: array with a scale axis.
    mode: 'mean' (default, the study's choice before the head) or 'max'.
    axis: the scale axis (1 in the [B, S, H, W, C] layout).
  """
  if getattr(x, 'ndim', 0) < 2:
    raise ValueError(f'scale_pool needs an array with a scale axis; got shape '
                     f'{getattr(x, "shape", None)}.')
  if mode == 'mean':
    return jnp.mean(x, axis=axis)
  if mode == 'max':
    return pooling.max_over(x, axis)
  raise ValueError(f"scale_pool mode must be 'mean' or 'max'; got {mode!r}.")
