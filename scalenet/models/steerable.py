"""Steerable-basis baselines: SESN (scale-equivariant) and SS-CNN (scale-steerable).

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks", ICLR 2020.
  Ghosh & Gupta, "Scale Steerable Filters for Locally Scale-Invariant
  Convolutional Neural Networks", ICML workshop 2019.
"""

from __future__ import annotations

from flax import nnx

from scalenet import layers, pooling, representations as reps
from scalenet.bases import hermite, log_radial
from scalenet.models import common


class SESN(common.Representable):
  """Hermite-Gaussian steerable convs over the scale-translation group.

  lift (Z2 -> H) -> group convs (H -> H, `interaction` neighbouring scales)
  -> max projection over scales -> head. Spatial pooling acts per level.
  Basis scales are min_scale * ratio**j exactly, so a rescale of the input
  by ratio**-j shifts the scale axis by j levels (`scale_actions`).

  Args:
    num_classes: logits size.
    in_channels: image channels.
    channels: width of each block.
    num_scales: levels of the scale axis.
    ratio: scale ratio between neighbouring levels.
    min_scale: sigma of the finest basis level, in pixels.
    kernel_size: side of every kernel. It must hold the largest scale's
      functions: truncating them breaks the scale relation between levels.
      At random init on mnist_5k digits (widths 8, s = 1/2, 'block0.conv'),
      Delta was 0.17-0.26 with 7x7 kernels (no better than the CNN), 0.0055
      with 11x11 and 0.0005 with 15x15 (scales 1 to 2); 11 is the default.
    basis_order: Hermite orders n + m < basis_order.
    interaction: input levels mixed into each output level.
    pools: number of leading blocks followed by 2x2 max pooling.
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=(32, 63, 95), num_scales: int = 4, ratio: float = 2 ** (1 / 3),
               min_scale: float = 1.0, kernel_size: int = 11, basis_order: int = 4,
               interaction: int = 2, pools: int = 2, rngs: nnx.Rngs):
    if not 1 <= interaction <= num_scales:
      raise ValueError(f'interaction must be in [1, num_scales={num_scales}]; '
                       f'got {interaction}.')
    if not ratio > 1:
      raise ValueError(f'ratio must be > 1; got {ratio!r}.')
    self.ratio = float(ratio)
    scales = [min_scale * self.ratio**j for j in range(num_scales)]
    basis = hermite.hermite_gaussian_basis(kernel_size, scales, basis_order)
    widths = (in_channels, *channels)
    blocks = []
    for i, pool in enumerate(common.pool_flags(len(channels), pools)):
      conv = layers.SteerableConv(widths[i], widths[i + 1], basis,
                                  mode='lift' if i == 0 else 'group',
                                  interaction=interaction, rngs=rngs)
      blocks.append(common.Block(conv, widths[i + 1], pool=pool, rngs=rngs))
    self.blocks = nnx.List(blocks)
    self.head = common.GlobalMaxHead(channels[-1], num_classes, rngs=rngs)

  def representations(self, x):
    """Every block over the scale-translation group [B, S, H', W', C], then the logits."""
    out = {}
    z = common.block_representations(self.blocks, x, out)
    out['logits'] = self.head(pooling.max_over(z, 1))
    return out

  def scale_actions(self):
    levels = reps.scale_space(self.ratio)
    return {**common.block_actions(len(self.blocks), levels), 'logits': reps.INVARIANT}


class SSCNN(common.SpatialBlocks):
  """Convs with log-radial-harmonic filters at several scales, max over scales.

  Representations: every block's map [B, H', W', C] (max over filter scales),
  then the logits."""

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=(32, 64, 96), scales=(1.0, 1.41, 2.0), kernel_size: int = 7,
               radial: int = 3, angular: int = 3, pools: int = 2, rngs: nnx.Rngs):
    basis = log_radial.log_radial_harmonic_basis(kernel_size, scales, radial, angular)
    widths = (in_channels, *channels)
    self.blocks = nnx.List([
        common.Block(layers.SteerableConv(widths[i], widths[i + 1], basis, mode='max',
                                          rngs=rngs),
                     widths[i + 1], pool=pool, rngs=rngs)
        for i, pool in enumerate(common.pool_flags(len(channels), pools))])
    self.head = common.GlobalMaxHead(channels[-1], num_classes, rngs=rngs)



sesn = common.register(SESN, 'sesn')
sscnn = common.register(SSCNN, 'sscnn')
MODELS = {b.__name__: b for b in (sesn, sscnn)}  # This family's registry entries.
