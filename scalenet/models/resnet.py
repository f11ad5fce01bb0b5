"""ResNet whose 3x3 convs are dilated scale convs over a Gaussian lift.

1x1 convs act on every level with the same weights; BatchNorm statistics are
shared across scales; the scale axis is pooled (mean) before the head.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from scalenet import _checks, layers, representations as reps, scale_convolution, scale_space
from scalenet.models import common


def _pointwise(cin, cout, rngs, stride=1):
  return layers.PerLevel(nnx.Conv(cin, cout, (1, 1), strides=stride, use_bias=False,
                                  rngs=rngs))


class Bottleneck(nnx.Module):
  """1x1 -> 3x3 scale conv (stride) -> 1x1 (x4), with a projection shortcut."""

  def __init__(self, cin: int, width: int, *, stride: int, base: int, interaction: int,
               rngs: nnx.Rngs):
    cout = 4 * width
    self.conv1, self.bn1 = _pointwise(cin, width, rngs), common.batch_norm(width, rngs=rngs)
    self.conv2 = layers.ScaleConv(width, width, interaction=interaction, base=base,
                                  stride=stride, use_bias=False, rngs=rngs)
    self.bn2 = common.batch_norm(width, rngs=rngs)
    self.conv3 = _pointwise(width, cout, rngs)
    # Zero-init the last BN scale: each block starts as the identity.
    self.bn3 = common.batch_norm(cout, scale_init=nnx.initializers.zeros, rngs=rngs)
    needs_proj = stride != 1 or cin != cout
    self.proj = _pointwise(cin, cout, rngs, stride) if needs_proj else None
    self.proj_bn = common.batch_norm(cout, rngs=rngs) if needs_proj else None

  def trace(self, x):
    """(the 3x3 scale conv's output, the block's output)."""
    y = nnx.relu(self.bn1(self.conv1(x)))
    c = self.conv2(y)
    y = self.bn3(self.conv3(nnx.relu(self.bn2(c))))
    shortcut = x if self.proj is None else self.proj_bn(self.proj(x))
    return c, nnx.relu(y + shortcut)

  def __call__(self, x):
    return self.trace(x)[1]


class ResNetScale(common.Representable):
  """Scale-conv ResNet for CIFAR-sized inputs [B, 32, 32, 3].

  Args:
    stage_sizes: bottleneck blocks per stage; (3, 4, 6, 3) is ResNet-50.
    width: width of the first stage (x2 per stage, x4 inside bottlenecks).
    num_scales, base, interaction, zero_scale: as in DSS.
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 3,
               stage_sizes=(3, 4, 6, 3), width: int = 64, num_scales: int = 3, base=2,
               interaction: int = 1, zero_scale: float = 0.5, rngs: nnx.Rngs):
    self.base = _checks.integer_base(base)
    self.num_scales = _checks.positive_int(num_scales, 'num_scales')
    if not 1 <= interaction <= num_scales:
      raise ValueError(f'interaction must be in [1, num_scales={num_scales}]; '
                       f'got {interaction}.')
    self.zero_scale = zero_scale
    self.stem = layers.ScaleConv(in_channels, width, interaction=interaction, base=self.base,
                                 use_bias=False, rngs=rngs)
    self.stem_bn = common.batch_norm(width, rngs=rngs)
    blocks, cin = [], width
    for i, n in enumerate(stage_sizes):
      for j in range(n):
        stride = 2 if i > 0 and j == 0 else 1
        blocks.append(Bottleneck(cin, width * 2**i, stride=stride, base=self.base,
                                 interaction=interaction, rngs=rngs))
        cin = 4 * width * 2**i
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)

  def representations(self, x):
    """'lift', the stem as block 0, every bottleneck [B, S, H', W', C], the logits.

    A bottleneck's 'conv' is its 3x3 scale conv (before its BatchNorm).
    """
    out = {'lift': scale_space.gaussian_lift(x, num_scales=self.num_scales, base=self.base,
                                             zero_scale=self.zero_scale)}
    out['block0.conv'] = self.stem(out['lift'])
    z = out['block0'] = nnx.relu(self.stem_bn(out['block0.conv']))
    for i, block in enumerate(self.blocks, start=1):
      out[f'block{i}.conv'], z = block.trace(z)
      out[f'block{i}'] = z
    out['logits'] = self.head(jnp.mean(scale_convolution.scale_pool(z, 'mean'), axis=(1, 2)))
    return out

  def scale_actions(self):
    levels = reps.scale_space(self.base)
    return {'lift': levels, **common.block_actions(len(self.blocks) + 1, levels),
            'logits': reps.INVARIANT}


resnet_scale = common.register(ResNetScale, 'resnet_scale')
resnet50_scale = common.register(ResNetScale, 'resnet50_scale', stage_sizes=(3, 4, 6, 3))
MODELS = {b.__name__: b for b in (resnet_scale, resnet50_scale)}  # This family's entries.
