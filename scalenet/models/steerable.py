"""Steerable-basis baselines: SESN (scale-equivariant) and SS-CNN (scale-steerable).

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks", ICLR 2020.
  Ghosh & Gupta, "Scale Steerable Filters for Locally Scale-Invariant
  Convolutional Neural Networks", ICML workshop 2019.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from scalenet import bases, layers
from scalenet.models import common


class SESN(nnx.Module):
  """Hermite-Gaussian steerable convs over the scale-translation group.

  lift (Z2 -> H) -> group convs (H -> H, `interaction` neighbouring scales)
  -> max projection over scales -> head. Spatial pooling acts per level.
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=(32, 63, 95), scales=(1.0, 1.26, 1.59, 2.0), kernel_size: int = 7,
               basis_order: int = 4, interaction: int = 2, pools: int = 2, rngs: nnx.Rngs):
    if not 1 <= interaction <= len(scales):
      raise ValueError(f'interaction must be in [1, len(scales)={len(scales)}]; '
                       f'got {interaction}.')
    basis = bases.hermite_gaussian_basis(kernel_size, scales, basis_order)
    widths = (in_channels, *channels)
    blocks = []
    for i, pool in enumerate(common.pool_flags(len(channels), pools)):
      conv = layers.SteerableConv(widths[i], widths[i + 1], basis,
                                  mode='lift' if i == 0 else 'group',
                                  interaction=interaction, rngs=rngs)
      blocks.append(common.Block(conv, widths[i + 1], pool=pool, rngs=rngs))
    self.blocks = nnx.List(blocks)
    self.head = common.Head(channels[-1], num_classes, rngs=rngs)

  def scale_features(self, x):
    """[B, S, H', W', C] features over the scale-translation group."""
    for block in self.blocks:
      x = block(x)
    return x

  def features(self, x):
    return jnp.max(self.scale_features(x), axis=1)

  def __call__(self, x):
    return self.head(self.features(x))


class SSCNN(nnx.Module):
  """Convs with log-radial-harmonic filters at several scales, max over scales."""

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=(32, 64, 96), scales=(1.0, 1.41, 2.0), kernel_size: int = 7,
               radial: int = 3, angular: int = 3, pools: int = 2, rngs: nnx.Rngs):
    basis = bases.log_radial_harmonic_basis(kernel_size, scales, radial, angular)
    widths = (in_channels, *channels)
    self.blocks = nnx.List([
        common.Block(layers.SteerableConv(widths[i], widths[i + 1], basis, mode='max',
                                          rngs=rngs),
                     widths[i + 1], pool=pool, rngs=rngs)
        for i, pool in enumerate(common.pool_flags(len(channels), pools))])
    self.head = common.Head(channels[-1], num_classes, rngs=rngs)

  def features(self, x):
    for block in self.blocks:
      x = block(x)
    return x

  def __call__(self, x):
    return self.head(self.features(x))


def sesn(num_classes=10, *, rngs, **kwargs):
  return SESN(num_classes, rngs=rngs, **kwargs)


def sscnn(num_classes=10, *, rngs, **kwargs):
  return SSCNN(num_classes, rngs=rngs, **kwargs)
