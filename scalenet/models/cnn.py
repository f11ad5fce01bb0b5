"""Plain CNN baseline and its deformable variants (DCN v1 / v2)."""

from __future__ import annotations

from flax import nnx

from scalenet import layers
from scalenet.models import common


class CNN(common.SpatialBlocks):
  """Conv blocks with ordinary 3x3 convs, then the shared head.

  Representations: every block's conv output and output [B, H', W', C], then
  the logits.

  Args:
    num_classes: logits size.
    in_channels: image channels.
    channels: width of each block (depth = len(channels)).
    pools: number of leading blocks followed by 2x2 max pooling.
    deformable: number of trailing convs replaced by deformable convs.
    modulated: deformable convs are DCN v2 (offsets + mask).
    offset_groups: offset groups of the deformable convs (divides channels).
    offset_scale: multiplier of the offset branches' output (layers.OFFSET_SCALE).
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=(32, 64, 96), pools: int = 2, deformable: int = 0,
               modulated: bool = False, offset_groups: int = 1,
               offset_scale: float = layers.OFFSET_SCALE, rngs: nnx.Rngs):
    depth = len(channels)
    if not 0 <= deformable <= depth:
      raise ValueError(f'deformable must be in [0, {depth}]; got {deformable}.')
    widths = (in_channels, *channels)
    blocks = []
    for i, pool in enumerate(common.pool_flags(depth, pools)):
      if i >= depth - deformable:
        conv = layers.DeformConv(widths[i], widths[i + 1], offset_groups=offset_groups,
                                 modulated=modulated, offset_scale=offset_scale, rngs=rngs)
      else:
        conv = nnx.Conv(widths[i], widths[i + 1], (3, 3), padding='SAME', rngs=rngs)
      blocks.append(common.Block(conv, widths[i + 1], pool=pool, rngs=rngs))
    self.blocks = nnx.List(blocks)
    self.head = common.GlobalMaxHead(channels[-1], num_classes, rngs=rngs)



cnn = common.register(CNN, 'cnn')
dcn = common.register(CNN, 'dcn', defaults=dict(deformable=2))  # the last two convs
dcnv2 = common.register(CNN, 'dcnv2', defaults=dict(deformable=2), modulated=True)
MODELS = {b.__name__: b for b in (cnn, dcn, dcnv2)}  # This family's registry entries.
