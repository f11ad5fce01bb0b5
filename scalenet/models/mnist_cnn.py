"""The plain CNN baseline of the published scale-MNIST benchmark, and its deformable variant."""

from __future__ import annotations

from flax import nnx

from scalenet import layers
from scalenet.models import common, harness as mc

# Widths of the study's deformable models in the harness: 0.9 x mc.WIDTHS,
# which pays for their offset branches within 1% of mnist_cnn_28's count.
STUDY_WIDTHS = (29, 57, 86)


class MnistCNN(mc.ConvStages):
  """Three 7x7 conv blocks and the harness's MLP head (494,549 parameters).

  Follows ISosnovik/sesn models/mnist_cnn.py (MNIST_CNN): conv(7x7, padding
  3) -> relu -> max pool -> BatchNorm, three times (32, 63, 95 channels),
  then flatten -> Linear(380, 256, no bias) -> BatchNorm1d -> relu ->
  Dropout(0.7) -> Linear(256, 10). `upsample=2` is mnist_cnn_56 (the input
  is up-sampled 2x, nearest, and the last pool is 8x8 instead of 4x4).

  Deliberate differences: NHWC layout (the head flattens H, W, C), BatchNorm
  running statistics as `common.batch_norm`.

  Args:
    num_classes: logits size.
    in_channels: image channels.
    channels: widths of the three blocks.
    hidden: width of the head's hidden layer.
    dropout: dropout rate of the head.
    upsample: 1 (mnist_cnn_28) or 2 (mnist_cnn_56).
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=mc.WIDTHS, hidden: int = mc.HIDDEN, dropout: float = mc.DROPOUT,
               upsample: int = 1, rngs: nnx.Rngs):
    channels = mc.check_widths(channels)
    self.upsample = mc.check_upsample(upsample)
    widths = (in_channels, *channels)
    k = mc.KERNEL_SIZE
    self.convs = nnx.List([mc.Conv(widths[i], widths[i + 1], k, padding=k // 2, rngs=rngs)
                           for i in range(3)])
    self.stages = nnx.List([mc.Stage(c, window=w, padding=p, rngs=rngs) for c, (w, p)
                            in zip(channels, mc.pool_geometry(self.upsample))])
    self.head = mc.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout, rngs=rngs)

mnist_cnn_28 = common.register(MnistCNN, 'mnist_cnn_28', upsample=1)
mnist_cnn_56 = common.register(MnistCNN, 'mnist_cnn_56', upsample=2)


class MnistDCN(mc.ConvStages):
  """`MnistCNN` with deformable convolutions in its last blocks (the study's `dcn` in the harness).

  What differs from `MnistCNN` (mnist_cnn_28): the convs of the last
  `deformable` blocks (default 2, as the study's `dcn`) are deformable
  (DCN v1, torchvision's sampling, `layers.DeformConv` with 7x7 kernels):
  each has a 3x3 offset branch, zero-initialised (training starts from the
  plain CNN) and scaled by `layers.OFFSET_SCALE`. To pay for the branches
  (28,322 + 50,372 parameters) at the table's budget the widths are 0.9 x
  (32, 63, 95) = (29, 57, 86): 490,326 parameters, 0.85% below mnist_cnn_28.
  Initialisation, pooling, head and protocol are mnist_cnn_28's.

  Representations: as `MnistCNN` ('block{i}.conv', 'block{i}', 'logits').

  Args:
    as `MnistCNN`; deformable: trailing blocks whose conv is deformable (0..3).
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=STUDY_WIDTHS, hidden: int = mc.HIDDEN, dropout: float = mc.DROPOUT,
               upsample: int = 1, deformable: int = 2, rngs: nnx.Rngs):
    channels = mc.check_widths(channels)
    if deformable not in (0, 1, 2, 3):
      raise ValueError(f'deformable must be in 0..3 (trailing blocks); got {deformable!r}.')
    self.upsample = mc.check_upsample(upsample)
    widths = (in_channels, *channels)
    k = mc.KERNEL_SIZE
    convs = []
    for i in range(3):
      if i >= 3 - deformable:
        init = mc.torch_uniform(widths[i] * k**2)
        convs.append(layers.DeformConv(widths[i], widths[i + 1], kernel_size=k,
                                       kernel_init=init, bias_init=init, rngs=rngs))
      else:
        convs.append(mc.Conv(widths[i], widths[i + 1], k, padding=k // 2, rngs=rngs))
    self.convs = nnx.List(convs)
    self.stages = nnx.List([mc.Stage(c, window=w, padding=p, rngs=rngs) for c, (w, p)
                            in zip(channels, mc.pool_geometry(self.upsample))])
    self.head = mc.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout, rngs=rngs)


mnist_dcn_28 = common.register(MnistDCN, 'mnist_dcn_28', upsample=1)

# This family's registry entries.
MODELS = {b.__name__: b for b in (
    mnist_cnn_28, mnist_cnn_56, mnist_dcn_28)}
