"""SI-ConvNet (Kanazawa et al. 2014) as in the published scale-MNIST benchmark.

References:
  Kanazawa, Sharma & Jacobs, "Locally Scale-Invariant Convolutional Neural
  Networks", NIPS 2014 Deep Learning Workshop (arXiv:1412.5104).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from scalenet import conv, pooling
from scalenet.models import common, interpolation, harness as mc

SCALES = (0.3, 0.45, 0.67, 1.0, 1.49, 2.23, 3.33)  # The reference's image scales.


def si_conv(x, kernel, bias, scales, padding: int):
  """Locally scale-invariant conv: max over s of L_s^-1 conv(L_s x).

  L_s rescales x [B, H, W, C] by s (bilinear, align_corners=True) and crops
  or zero-pads back to H x W about the centre; L_s^-1 does the same by 1/s.

  Args:
    x: [B, H, W, Cin].
    kernel: [k, k, Cin, Cout]; bias: [Cout].
    scales: the image scales s.
    padding: zero padding of the conv (k // 2 keeps the size).

  Returns:
    [B, H, W, Cout], the maximum over scales of the back-rescaled responses.
  """
  h, w = x.shape[1:3]
  responses = []
  for s in scales:
    xs = interpolation.resample(x, interpolation.rescale_in_place(h, s),
                                interpolation.rescale_in_place(w, s))
    y = conv.conv2d(xs, kernel, padding=padding) + bias
    responses.append(interpolation.resample(
        y, interpolation.rescale_in_place(y.shape[1], 1 / s),
        interpolation.rescale_in_place(y.shape[2], 1 / s)))
  return pooling.max_over(jnp.stack(responses), 0)


class SIConv(mc.Conv):
  """A 7x7 conv with bias applied at every scale of `SCALES`, max-pooled over scales."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               scales=SCALES, rngs: nnx.Rngs):
    super().__init__(in_features, out_features, kernel_size, padding=kernel_size // 2,
                     rngs=rngs)
    self.scales = tuple(float(s) for s in scales)
    if not self.scales or min(self.scales) <= 0:
      raise ValueError(f'scales must be positive; got {scales!r}.')

  def __call__(self, x):
    return si_conv(x, self.kernel[...], self.bias[...], self.scales, self.padding)


class MnistKanazawa(mc.ConvStages):
  """SI-ConvNet: the plain CNN with every conv made locally scale-invariant (494,549 parameters).

  Follows ISosnovik/sesn models/mnist_kanazawa.py (MNIST_Kanazawa) and
  models/impl/scale_modules.py (Kanazawa_SIConv2d, rescale4d): each conv
  rescales its input by s in SCALES (bilinear, align_corners=True, floor(H s)
  pixels, centre crop/pad back), convolves (7x7, padding 3, bias), rescales
  back by 1/s the same way and takes the maximum over scales. Then relu ->
  max pool -> BatchNorm and the harness's head, as `MnistCNN`.

  Deliberate differences: rescaling is by fixed resampling matrices
  (`interpolation`), equal to PyTorch's up to float rounding; NHWC layout;
  BatchNorm as `common.batch_norm`. Its 'block{i}.conv' representation is the
  SI-conv's output (max over scales, before relu).

  Args:
    num_classes, in_channels, channels, hidden, dropout, upsample: as `MnistCNN`.
    scales: the image scales of every conv.
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=mc.WIDTHS, hidden: int = mc.HIDDEN, dropout: float = mc.DROPOUT,
               upsample: int = 1, scales=SCALES, rngs: nnx.Rngs):
    channels = mc.check_widths(channels)
    self.upsample = mc.check_upsample(upsample)
    widths = (in_channels, *channels)
    self.convs = nnx.List([SIConv(widths[i], widths[i + 1], mc.KERNEL_SIZE, scales=scales,
                                  rngs=rngs) for i in range(3)])
    self.stages = nnx.List([mc.Stage(c, window=w, padding=p, rngs=rngs) for c, (w, p)
                            in zip(channels, mc.pool_geometry(self.upsample))])
    self.head = mc.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout, rngs=rngs)




mnist_kanazawa_28 = common.register(MnistKanazawa, 'mnist_kanazawa_28', upsample=1)
mnist_kanazawa_56 = common.register(MnistKanazawa, 'mnist_kanazawa_56', upsample=2)

# This family's registry entries.
MODELS = {b.__name__: b for b in (
    mnist_kanazawa_28, mnist_kanazawa_56)}
