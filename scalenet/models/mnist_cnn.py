"""The plain CNN baseline of the published scale-MNIST benchmark."""

from __future__ import annotations

from flax import nnx

from scalenet.models import mnist_common as mc


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
    self.head = mc.Head(4 * channels[-1], hidden, num_classes, dropout=dropout, rngs=rngs)




mnist_cnn_28 = mc.factory(MnistCNN, 'mnist_cnn_28', upsample=1)
mnist_cnn_56 = mc.factory(MnistCNN, 'mnist_cnn_56', upsample=2)
