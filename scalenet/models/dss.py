"""Deep Scale Spaces: DSS v1 (Gaussian lift), v2 (bilinear lift), deformable DSS.

References:
  Worrall & Welling, "Deep Scale-spaces: Equivariance Over Scale", NeurIPS 2019.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scalenet import _checks, layers, representations as reps, scale_convolution, scale_space
from scalenet import pooling, transforms
from scalenet.models import common


class DSS(common.Representable):
  """gaussian_lift -> scale-conv blocks -> scale_pool -> head (DSS v1).

  Args:
    num_classes: logits size.
    in_channels: image channels.
    channels: width of each block.
    num_scales: levels of the lift.
    base: integer scale ratio between levels (dilation base**s).
    interaction: input levels mixed into each output level, <= num_scales.
    zero_scale: scale of the input image for the lift.
    pools: number of leading blocks followed by 2x2 max pooling. Set 0 for
      the exactly equivariant backbone (pooling reads odd pixels).
    scale_pool_mode: 'mean' or 'max' over scales before the head.
    deformable: use deformable scale convs (Deformable DSS).
    offset_scale: multiplier of the offset branches' output (layers.OFFSET_SCALE).
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=(32, 64, 96), num_scales: int = 4, base=2, interaction: int = 2,
               zero_scale: float = 0.5, pools: int = 2, scale_pool_mode: str = 'mean',
               deformable: bool = False, offset_scale: float = layers.OFFSET_SCALE,
               rngs: nnx.Rngs):
    self.base = _checks.integer_base(base)
    num_scales = _checks.positive_int(num_scales, 'num_scales')
    if not 1 <= interaction <= num_scales:
      raise ValueError(f'interaction must be in [1, num_scales={num_scales}]; '
                       f'got {interaction}.')
    if scale_pool_mode not in ('mean', 'max'):
      raise ValueError(f"scale_pool_mode must be 'mean' or 'max'; got {scale_pool_mode!r}.")
    self.num_scales, self.zero_scale, self.scale_pool_mode = num_scales, zero_scale, scale_pool_mode
    if deformable:
      conv_cls = functools.partial(layers.DeformScaleConv, offset_scale=offset_scale)
    else:
      conv_cls = layers.ScaleConv
    widths = (in_channels, *channels)
    self.blocks = nnx.List([
        common.Block(conv_cls(widths[i], widths[i + 1], interaction=interaction,
                              base=self.base, rngs=rngs),
                     widths[i + 1], pool=pool, rngs=rngs)
        for i, pool in enumerate(common.pool_flags(len(channels), pools))])
    self.head = common.GlobalMaxHead(channels[-1], num_classes, rngs=rngs)

  def lift(self, x):
    return scale_space.gaussian_lift(x, num_scales=self.num_scales, base=self.base,
                                     zero_scale=self.zero_scale)

  def backbone(self, z):
    """Scale-conv blocks on a scale-space tensor: [B, S, H, W, C] -> [B, S, H', W', C']."""
    for block in self.blocks:
      z = block(z)
    return z

  def representations(self, x):
    """'lift' and every block [B, S, H', W', C] (levels `base` apart), then the logits."""
    out = {'lift': self.lift(x)}
    z = common.block_representations(self.blocks, out['lift'], out)
    out['logits'] = self.head(scale_convolution.scale_pool(z, self.scale_pool_mode))
    return out

  def scale_actions(self):
    levels = reps.scale_space(self.base)
    return {'lift': levels, **common.block_actions(len(self.blocks), levels),
            'logits': reps.INVARIANT}


class DSSv2(common.Representable):
  """bilinear_lift -> tied conv blocks per level -> match_sizes -> scale_pool -> head.

  Every level is processed at its own resolution by the same (ordinary)
  convs; `match_sizes` max-pools all levels to the coarsest before pooling
  over scales. BatchNorm statistics are shared across levels, as in DSS v1:
  each block normalises the pixels of all levels together, so train mode
  (batch statistics) and eval mode (one running average) see the same
  mixture.

  Representations: every level is shown on the finest level's grid
  (`_on_finest_grid`, nearest up-sampling), a scale-space tensor whose
  levels are `base` apart. There a rescale of the input by 1/base is a
  rescale by 1/base plus a one-level shift, as for DSS v1. (Max-pooling to
  the coarsest grid, as the head does, would itself break that relation:
  at random init 'block0.conv' scored Delta 0.76 at s = 1/2 that way.)
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=(32, 64, 96), num_scales: int = 3, base: float = 2.0,
               pools: int = 2, scale_pool_mode: str = 'mean', rngs: nnx.Rngs):
    self.num_scales = _checks.positive_int(num_scales, 'num_scales')
    if not base > 1:
      raise ValueError(f'base must be > 1; got {base!r}.')
    self.base, self.scale_pool_mode = base, scale_pool_mode
    widths = (in_channels, *channels)
    self.blocks = nnx.List([
        common.Block(nnx.Conv(widths[i], widths[i + 1], (3, 3), padding='SAME', rngs=rngs),
                     widths[i + 1], pool=pool, pool_padding='SAME', rngs=rngs)
        for i, pool in enumerate(common.pool_flags(len(channels), pools))])
    self.head = common.GlobalMaxHead(channels[-1], num_classes, rngs=rngs)

  def representations(self, x):
    """'lift' and every block on the coarsest grid [B, S, h, w, C], then the logits."""
    levels = scale_space.bilinear_lift(x, num_scales=self.num_scales, base=self.base)
    out = {'lift': _on_finest_grid(levels)}
    for i, block in enumerate(self.blocks):
      convs, levels = _shared_norm_block(block, levels)
      out[f'block{i}.conv'] = _on_finest_grid(convs)
      out[f'block{i}'] = _on_finest_grid(levels)
    pooled = scale_convolution.scale_pool(scale_space.match_sizes(levels),
                                          self.scale_pool_mode)
    out['logits'] = self.head(pooled)
    return out

  def scale_actions(self):
    levels = reps.scale_space(self.base)
    return {'lift': levels, **common.block_actions(len(self.blocks), levels),
            'logits': reps.INVARIANT}


def _on_finest_grid(levels) -> jax.Array:
  """[B, S, H0, W0, C]: every level [B, H_k, W_k, C] up-sampled (nearest) to level 0's size.

  Exact repetition where H0 / H_k is an integer (levels of a base-2 pyramid
  before any odd-sized pooling), nearest resizing otherwise.
  """
  h, w = levels[0].shape[1:3]
  out = []
  for z in levels:
    if h % z.shape[1] == 0 and w % z.shape[2] == 0 and h // z.shape[1] == w // z.shape[2]:
      out.append(transforms.nearest_upsample(z, h // z.shape[1]))
    else:
      out.append(jax.image.resize(z, (z.shape[0], h, w, z.shape[3]), 'nearest'))
  return jnp.stack(out, axis=1)


def _shared_norm_block(block: common.Block, levels):
  """A conv block over levels of different sizes, BatchNorm statistics shared.

  Returns (conv outputs, block outputs), one per level. The relu'd conv
  outputs of every level are normalised as one set of pixels (weighted by
  their count, as BatchNorm over [B, S, H, W, C] weighs DSS v1's levels).
  """
  convs = [block.conv(z) for z in levels]
  flat = jnp.concatenate([nnx.relu(c).reshape(-1, c.shape[-1]) for c in convs])
  normed = block.bn(flat)
  outs, start = [], 0
  for c in convs:
    n = c.size // c.shape[-1]
    y = normed[start:start + n].reshape(c.shape)
    outs.append(pooling.max_pool(y, 2, block.pool_padding) if block.pool else y)
    start += n
  return convs, outs


dss_v1 = common.register(DSS, 'dss_v1')
dss_v2 = common.register(DSSv2, 'dss_v2')
deform_dss = common.register(DSS, 'deform_dss', deformable=True)
MODELS = {b.__name__: b for b in (dss_v1, dss_v2, deform_dss)}  # This family's entries.
