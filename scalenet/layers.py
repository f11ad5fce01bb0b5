"""Flax NNX layers: they own parameters and call the pure ops.

Shapes: images [B, H, W, C]; scale-space tensors [B, S, H, W, C].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scalenet import _checks, conv, deform, pooling, scale_convolution


def truncated_normal(key, shape) -> jax.Array:
  """Standard normal truncated to [-2, 2], float32, drawn on the host.

  A concrete key seeds numpy (rejection sampling), so building a model
  compiles nothing, where jax.random.truncated_normal compiles one program per
  kernel shape (benchmarks/README.md, first `get_model`). Deterministic in the
  key. Under tracing (nnx.eval_shape, jit) jax's own sampler is used.
  """
  if isinstance(key, jax.core.Tracer):
    return jax.random.truncated_normal(key, -2.0, 2.0, shape)
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
  n = int(np.prod(shape))
  out = np.empty(0, np.float32)
  while out.size < n:
    draw = rng.standard_normal(2 * (n - out.size) + 16).astype(np.float32)
    out = np.concatenate([out, draw[np.abs(draw) <= 2.0]])
  return jnp.asarray(out[:n].reshape(shape))


def he_truncated_normal(rngs, shape, fan_in):
  """He init, std sqrt(2 / fan_in), from a normal truncated to 2 std (the study's init)."""
  std = np.sqrt(2.0 / fan_in) / 0.87962566  # truncated normal correction
  return std * truncated_normal(rngs.params(), shape)


class ScaleConv(nnx.Module):
  """Dilated scale conv, weights tied across scales (see `scale_conv`).

  `kernel_init` (key, shape) -> array replaces the truncated He-normal kernel
  of shape [I, k, k, Cin, Cout].
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 3,
               interaction: int = 1, base=2, stride: int = 1, use_bias: bool = True,
               kernel_init=None, rngs: nnx.Rngs):
    self.base = _checks.integer_base(base)
    self.stride = stride
    shape = (interaction, kernel_size, kernel_size, in_features, out_features)
    self.kernel = nnx.Param(
        he_truncated_normal(rngs, shape, interaction * kernel_size**2 * in_features)
        if kernel_init is None else kernel_init(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

  def __call__(self, x):
    y = scale_convolution.scale_conv(x, self.kernel[...], base=self.base, stride=self.stride)
    return y if self.bias is None else y + self.bias[...]


class PerLevel(nnx.Module):
  """Applies an image layer to every level of a scale-space tensor, weights tied."""

  def __init__(self, layer: nnx.Module):
    self.layer = layer

  def __call__(self, x):
    b, s = x.shape[:2]
    y = self.layer(x.reshape(b * s, *x.shape[2:]))
    return y.reshape(b, s, *y.shape[1:])


# Offset branches' outputs are multiplied by this: for Adam it acts as a 0.1
# learning-rate multiplier on the branch, because at 1.0 an Adam step of lr
# 0.01 moves every tap by up to ~fan_in * lr pixels and `dcn` fails to train.
OFFSET_SCALE = 0.1


class DeformConv(nnx.Module):
  """Deformable conv with its offset (and, for v2, mask) branch.

  The branch is a 3x3 conv zero-initialised, so at init offsets are 0 and the
  v2 mask is 2 * sigmoid(0) = 1: training starts from the plain conv. Its
  output is multiplied by `offset_scale` (see OFFSET_SCALE). `kernel_init`
  and `bias_init` (key, shape) -> array replace the main conv's truncated
  He-normal kernel and zero bias.
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 3,
               offset_groups: int = 1, modulated: bool = False,
               offset_scale: float = OFFSET_SCALE, kernel_init=None, bias_init=None,
               rngs: nnx.Rngs):
    if in_features % offset_groups:
      raise ValueError(f'offset_groups ({offset_groups}) must divide the input '
                       f'channels ({in_features}).')
    self.k, self.groups, self.modulated = kernel_size, offset_groups, modulated
    self.offset_scale = offset_scale
    taps = kernel_size**2
    shape = (kernel_size, kernel_size, in_features, out_features)
    self.kernel = nnx.Param(he_truncated_normal(rngs, shape, taps * in_features)
                            if kernel_init is None else kernel_init(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_features,)) if bias_init is None
                          else bias_init(rngs.params(), (out_features,)))
    branch = offset_groups * taps * (3 if modulated else 2)
    self.offset = nnx.Conv(in_features, branch, (3, 3), padding='SAME',
                           kernel_init=nnx.initializers.zeros, rngs=rngs)

  def offsets_and_mask(self, x):
    """Offsets [B, H, W, G, K, 2] in pixels and mask [B, H, W, G, K] or None."""
    b, h, w, _ = x.shape
    taps = self.k**2
    out = self.offset(x)
    off = (out[..., :2 * self.groups * taps].reshape(b, h, w, self.groups, taps, 2)
           * self.offset_scale)
    mask = None
    if self.modulated:
      mask = 2.0 * jax.nn.sigmoid(out[..., 2 * self.groups * taps:].reshape(
          b, h, w, self.groups, taps))
    return off, mask

  def __call__(self, x):
    off, mask = self.offsets_and_mask(x)
    pad = self.k // 2
    return deform.deform_conv(x, off, self.kernel[...], mask=mask, padding=pad) + self.bias[...]


class DeformScaleConv(nnx.Module):
  """Deformable scale conv (Deformable DSS).

  Level s samples its taps around the dilated grid (dilation base**s) at
  offsets predicted by a scale conv (weights tied across scales, zero-init)
  and multiplied by base**s, so offsets are measured in units of the level's
  own dilation and the layer keeps the scale structure of `ScaleConv`.
  The branch output is also multiplied by `offset_scale` (see OFFSET_SCALE).
  `kernel_init(key, shape)` replaces the truncated He-normal initialiser;
  `use_bias=False` drops the main conv's bias (the branch keeps its own).
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 3,
               interaction: int = 1, base=2, offset_scale: float = OFFSET_SCALE,
               kernel_init=None, use_bias: bool = True, rngs: nnx.Rngs):
    self.base = _checks.integer_base(base)
    self.k, self.interaction, self.offset_scale = kernel_size, interaction, offset_scale
    fan_in = interaction * kernel_size**2 * in_features
    shape = (interaction, kernel_size, kernel_size, in_features, out_features)
    self.kernel = nnx.Param(he_truncated_normal(rngs, shape, fan_in) if kernel_init is None
                            else kernel_init(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.offset_kernel = nnx.Param(jnp.zeros((interaction, 3, 3, in_features,
                                              2 * kernel_size**2)))
    self.offset_bias = nnx.Param(jnp.zeros((2 * kernel_size**2,)))

  def __call__(self, x):
    b, s, h, w, cin = x.shape
    taps = self.k**2
    off = scale_convolution.scale_conv(x, self.offset_kernel[...], base=self.base)
    off = (off + self.offset_bias[...]).reshape(b, s, h, w, taps, 2) * self.offset_scale
    xs = scale_convolution._interaction_stack(x, self.interaction)
    kern = jnp.moveaxis(self.kernel[...], 0, 2).reshape(
        self.k, self.k, self.interaction * cin, -1)
    levels = []
    for lv, d in enumerate(scale_convolution.dilations(s, self.base)):
      levels.append(deform.deform_conv(xs[:, lv], off[:, lv] * d, kern,
                                       padding=d * (self.k // 2), dilation=d))
    y = jnp.stack(levels, axis=1)
    return y if self.bias is None else y + self.bias[...]


def lift_conv(x: jax.Array, kernels: jax.Array, padding) -> jax.Array:
  """Image -> scale space: [B, H, W, Cin] -> [B, S, H', W', Cout], level j
  convolved with kernels[j] of [S, k, k, Cin, Cout] (one conv, levels stacked
  in the output channels)."""
  s, k, _, cin, cout = kernels.shape
  stacked = jnp.moveaxis(kernels, 0, -2).reshape(k, k, cin, s * cout)
  y = conv.conv2d(x, stacked, padding=padding)
  return jnp.moveaxis(y.reshape(*y.shape[:3], s, cout), 3, 1)


def levelwise_conv(x: jax.Array, kernels: jax.Array, padding) -> jax.Array:
  """Scale space -> scale space: [B, S, H, W, Cin] -> [B, S, H', W', Cout],
  level j convolved with kernels[j] of [S, k, k, Cin, Cout] (one conv per
  level: on XLA:CPU a feature-grouped conv over the levels is slower,
  benchmarks/README.md)."""
  if x.shape[1] != kernels.shape[0]:
    raise ValueError(f'input has {x.shape[1]} levels but the basis has {kernels.shape[0]}.')
  return jnp.stack([conv.conv2d(x[:, j], kernels[j], padding=padding)
                    for j in range(kernels.shape[0])], axis=1)


class SteerableConv(nnx.Module):
  """Conv whose kernels are learned combinations of a fixed multi-scale basis.

  mode='lift': [B, H, W, Cin] -> [B, S, H, W, Cout], level j uses scale j.
  mode='group': [B, S, H, W, Cin] -> [B, S, H, W, Cout], level j mixes levels
    j..j+I-1 with basis scale j (the scale-translation group conv of SESN;
    with I = 1, each level through its own scale: SESConv_H_H, scale_size 1).
  mode='max': [B, H, W, Cin] -> [B, H, W, Cout], max over the scaled filters
    (the locally scale-invariant conv of SS-CNN).

  The coefficients are [I, Cin, Cout, F] for a basis [F, S, k, k];
  `kernel_init` (key, shape) -> array replaces their truncated He-normal
  init. `padding` is conv2d's ('SAME', or an int for zero padding on every
  side).
  """

  def __init__(self, in_features: int, out_features: int, basis: np.ndarray, *,
               mode: str, interaction: int = 1, padding='SAME', kernel_init=None,
               rngs: nnx.Rngs):
    if mode not in ('lift', 'group', 'max'):
      raise ValueError(f"SteerableConv mode must be 'lift', 'group' or 'max'; got {mode!r}.")
    self.mode, self.interaction = mode, interaction if mode == 'group' else 1
    self.padding = padding
    self.basis = nnx.data(jnp.asarray(basis, jnp.float32))  # [F, S, k, k], fixed
    nf = basis.shape[0]
    shape = (self.interaction, in_features, out_features, nf)
    self.weight = nnx.Param(
        he_truncated_normal(rngs, shape, self.interaction * in_features * nf)
        / np.sqrt(basis.shape[-1]) if kernel_init is None else kernel_init(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_features,)))

  def kernels(self):
    """[S, k, k, I*Cin, Cout]: one kernel per basis scale."""
    w = self.weight[...]
    return jnp.einsum('iof,fsyx->syxio', w.reshape(-1, *w.shape[2:]), self.basis)

  def __call__(self, x):
    kern = self.kernels()
    if self.mode in ('lift', 'max'):
      y = lift_conv(x, kern, self.padding) + self.bias[...]
      return y if self.mode == 'lift' else pooling.max_over(y, 1)
    xs = scale_convolution._interaction_stack(x, self.interaction)
    return levelwise_conv(xs, kern, self.padding) + self.bias[...]
