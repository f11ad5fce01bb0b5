"""Pieces every model family shares: conv blocks and the classification head."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from scalenet import layers

# Running-statistics momentum of every BatchNorm: new = 0.9 * old + 0.1 * batch,
# PyTorch's default (momentum=0.1 there), which the reference DSS/SESN code
# uses. Flax's default 0.99 keeps 0.99**230 = 10% of the initial variance after
# the 230 steps of a short run: eval-mode accuracy then collapses to chance
# while train-mode accuracy is ~97% (measured on the cnn, mnist_5k, 10 epochs).
BN_MOMENTUM = 0.9


def batch_norm(features: int, *, rngs: nnx.Rngs, **kwargs) -> nnx.BatchNorm:
  """nnx.BatchNorm with the project's momentum (see BN_MOMENTUM)."""
  return nnx.BatchNorm(features, momentum=BN_MOMENTUM, rngs=rngs, **kwargs)


class Head(nnx.Module):
  """Global spatial max pool then a dense layer: [B, H, W, C] -> logits [B, K]."""

  def __init__(self, in_features: int, num_classes: int, *, rngs: nnx.Rngs):
    self.bn = batch_norm(in_features, rngs=rngs)
    self.dense = nnx.Linear(in_features, num_classes, rngs=rngs)

  def __call__(self, features):
    return self.dense(self.bn(jnp.max(features, axis=(1, 2))))


class Block(nnx.Module):
  """conv -> relu -> BatchNorm over channels -> optional 2x2 max pool.

  On scale-space tensors [B, S, H, W, C], BatchNorm's statistics are shared
  across scales (it normalises over every axis but the channels), so all
  levels are treated alike; the scale axis is never normalised over.
  """

  def __init__(self, conv: nnx.Module, features: int, *, pool: bool,
               pool_padding: str = 'VALID', rngs: nnx.Rngs):
    self.conv = conv
    self.bn = batch_norm(features, rngs=rngs)
    self.pool, self.pool_padding = pool, pool_padding

  def __call__(self, x):
    y = self.bn(nnx.relu(self.conv(x)))
    return layers.max_pool(y, 2, self.pool_padding) if self.pool else y


def pool_flags(depth: int, pools: int) -> list[bool]:
  """Pool after each of the first `pools` blocks."""
  return [i < pools for i in range(depth)]
