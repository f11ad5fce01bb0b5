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


def _conv_level(x, kernel, stride, dilation):
  # conv.conv2d picks the direct or DFT path per shape and drops the taps of
  # large dilations that read only padding.
  return conv.conv2d(x, kernel, padding='SAME', stride=stride, dilation=dilation)


def _scale_conv_loop(x, kernel, dils, stride):
  """One conv per (output level, interaction) pair, summed: no stacked copy
  of the input (the fastest form on CPU for DSS-sized layers; benchmarks/README.md).

  x [B, S, H, W, Cin], kernel [I, kh, kw, Cin, Cout].
  """
  num_scales, interaction = x.shape[1], kernel.shape[0]
  return jnp.stack([
      sum(_conv_level(x[:, s + i], kernel[i], stride, d)
          for i in range(min(interaction, num_scales - s)))
      for s, d in enumerate(dils)], axis=1)


def scale_conv(x: jax.Array, kernel: jax.Array, *, base=2, stride: int = 1,
               padding: str = 'SAME') -> jax.Array:
  """Dilated scale convolution, weights tied across scales.

  Args:
    x: scale-space tensor [B, S, H, W, Cin], level 0 finest.
    kernel: [I, kh, kw, Cin, Cout]; I (interaction) input levels are mixed
      into each output level, 1 <= I <= S.
    base: positive integer; level s uses dilation base**s exactly.
    stride: spatial stride, the same at every level.
    padding: only 'SAME' (zero padding), so all levels keep one spatial size.

  Returns:
    [B, S, ceil(H/stride), ceil(W/stride), Cout].

  Raises:
    ValueError: wrong rank, mismatched channels, interaction > S, a
      non-integer base, an unknown padding.
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
  stride = _checks.positive_int(stride, 'stride')
  dils = dilations(num_scales, base)
  return _scale_conv_loop(x, kernel.astype(x.dtype), dils, stride)


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
