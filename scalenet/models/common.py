"""Pieces every model family shares: conv blocks, the head, the representation protocol.

Every model implements `representations(x) -> {name: array}` and
`scale_actions() -> {name: Action}` (see scalenet/representations.py);
`Representable` derives `__call__` (the logits) from them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scalenet import pooling, representations

# Running-statistics momentum of every BatchNorm: new = 0.9 * old + 0.1 * batch,
# PyTorch's default (momentum=0.1 there), which the reference DSS/SESN code
# uses. Flax's default 0.99 keeps 0.99**230 = 10% of the initial variance after
# the 230 steps of a short run, and eval-mode accuracy collapses to chance.
BN_MOMENTUM = 0.9


def batch_norm(features: int, *, rngs: nnx.Rngs, **kwargs) -> nnx.BatchNorm:
  """nnx.BatchNorm with the project's momentum (see BN_MOMENTUM)."""
  return nnx.BatchNorm(features, momentum=BN_MOMENTUM, rngs=rngs, **kwargs)


class GlobalMaxHead(nnx.Module):
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

  def trace(self, x):
    """(conv output before relu, BatchNorm and pooling; block output)."""
    c = self.conv(x)
    y = self.bn(nnx.relu(c))
    return c, (pooling.max_pool(y, 2, self.pool_padding) if self.pool else y)

  def __call__(self, x):
    return self.trace(x)[1]


def block_representations(blocks, x, reps: dict) -> jax.Array:
  """Runs `blocks`, recording 'block{i}.conv' and 'block{i}' in `reps`; returns the output."""
  for i, block in enumerate(blocks):
    reps[f'block{i}.conv'], x = block.trace(x)
    reps[f'block{i}'] = x
  return x


def block_actions(num_blocks: int, action: representations.Action) -> dict:
  """{'block{i}.conv': action, 'block{i}': action} for every block."""
  return {f'{name}': action for i in range(num_blocks)
          for name in (f'block{i}.conv', f'block{i}')}


class Representable(nnx.Module):
  """Mixin: the logits are the last representation.

  Subclasses implement `representations(x)` (ending in 'logits') and
  `scale_actions()`; `__call__` reuses the former, so the two cannot drift.
  """

  def __call__(self, x):
    return self.representations(x)['logits']


class SpatialBlocks(Representable):
  """Mixin of models that are `self.blocks` of plain maps [B, H, W, C], then `self.head`."""

  def representations(self, x):
    out = {}
    out['logits'] = self.head(block_representations(self.blocks, x, out))
    return out

  def scale_actions(self):
    return {**block_actions(len(self.blocks), representations.SPATIAL),
            'logits': representations.INVARIANT}


def pool_flags(depth: int, pools: int) -> list[bool]:
  """Pool after each of the first `pools` blocks."""
  return [i < pools for i in range(depth)]


def register(cls, name: str, *, defaults: dict | None = None, **fixed):
  """A registry entry: `build(num_classes, rngs=..., **kwargs)` -> cls(num_classes, ...).

  `fixed` keywords are the entry's own (a config may not set them);
  `defaults` are keywords a config may override (e.g. dcn's deformable=2).
  The builder carries `model_class`, `fixed_kwargs` and `default_kwargs`, so
  `models.get_model` checks a config's keywords against cls.__init__ less the
  fixed ones, and `models.model_defaults` knows every default.
  """
  defaults = dict(defaults or {})

  def build(num_classes: int = 10, *, rngs, **kwargs):
    return cls(num_classes, rngs=rngs, **fixed, **{**defaults, **kwargs})
  build.__name__ = build.__qualname__ = name
  build.__doc__ = f'{cls.__name__} with {fixed or defaults or "its defaults"}.'
  build.model_class, build.fixed_kwargs, build.default_kwargs = cls, dict(fixed), defaults
  return build
