"""SiCNN (Xu et al. 2014) as in the published scale-MNIST benchmark.

References:
  Xu, Xiao, Zhang, Yang & Zhang, "Scale-Invariant Convolutional Neural
  Networks", arXiv:1411.6369, 2014.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from scalenet import conv, pooling, representations as reps, transforms
from scalenet.models import common, interpolation, harness as mc

SCALES = (0.3, 0.45, 0.67, 1.0, 1.49, 2.23, 3.33)  # The reference's kernel scales.


def kernel_support(kernel_size: int, scales) -> tuple[int, int]:
  """(size of the common kernel grid, conv padding) for the largest scale.

  The grid is the kernel zero-padded by ceil((int(k max(s)) - k) / 2) on
  each side; the conv pads by int(k max(s)) // 2 (both as the reference).
  """
  max_size = int(kernel_size * max(scales))
  pad = math.ceil((max_size - kernel_size) / 2)
  return kernel_size + 2 * pad, max_size // 2


def _kernel_matrix(size: int, scale: float) -> np.ndarray:
  # Down-scaling is bilinear; up-scaling nearest, the minimum-norm inverse of
  # bilinear down-scaling (the paper's choice, as the reference notes).
  return interpolation.rescale_in_place(size, scale, 'nearest' if scale > 1 else 'bilinear')


def scaled_kernels(kernel: jnp.ndarray, scales) -> jnp.ndarray:
  """One kernel per scale, each with the L1 norm of the original per (in, out) pair.

  Args:
    kernel: [k, k, Cin, Cout].
    scales: kernel scales.

  Returns:
    [S, P, P, Cin, Cout] with P from `kernel_support`.
  """
  k = kernel.shape[0]
  size, _ = kernel_support(k, scales)
  pad = (size - k) // 2
  grid = jnp.pad(kernel, ((pad, pad), (pad, pad), (0, 0), (0, 0)))
  norm = jnp.sum(jnp.abs(grid), axis=(0, 1))
  out = []
  for s in scales:
    m = jnp.asarray(_kernel_matrix(size, s), kernel.dtype)
    scaled = jnp.einsum('ah,hwio,bw->abio', m, grid, m)
    scaled_norm = jnp.sum(jnp.abs(scaled), axis=(0, 1))
    # An all-zero pair stays zero instead of 0 / 0.
    safe = jnp.where(scaled_norm > 0, scaled_norm, 1.0)
    out.append(scaled * (norm / safe))
  return jnp.stack(out)


class ColumnConv(nnx.Module):
  """One kernel shared by S columns, rescaled to each column's scale.

  Input [B, H, W, Cin] (the first layer: every column sees the image) or
  [B, S, H, W, Cin] (column s convolved with the kernel at scale s);
  output [B, S, H, W, Cout].
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               scales=SCALES, rngs: nnx.Rngs):
    self.scales = tuple(float(s) for s in scales)
    if not self.scales or min(self.scales) <= 0:
      raise ValueError(f'scales must be positive; got {scales!r}.')
    _, self.padding = kernel_support(kernel_size, self.scales)
    self.kernel = nnx.Param(mc.torch_uniform(in_features * kernel_size**2)(
        rngs.params(), (kernel_size, kernel_size, in_features, out_features)))

  def __call__(self, x):
    kernels = scaled_kernels(self.kernel[...], self.scales)
    if x.ndim == 4:
      s, p, _, cin, cout = kernels.shape
      stacked = jnp.moveaxis(kernels, 0, 3).reshape(p, p, cin, s * cout)
      y = conv.conv2d(x, stacked, padding=self.padding)
      return jnp.moveaxis(y.reshape(*y.shape[:3], s, cout), 3, 1)
    if x.shape[1] != len(self.scales):
      raise ValueError(f'input has {x.shape[1]} columns but the layer has '
                       f'{len(self.scales)} scales.')
    # A loop, not a grouped conv: XLA:CPU's grouped convs are slow
    # (benchmarks/README.md).
    return jnp.stack([conv.conv2d(x[:, i], kernels[i], padding=self.padding)
                      for i in range(len(self.scales))], axis=1)


class ColumnBatchNorm(nnx.Module):
  """BatchNorm with its own statistics and affine per (column, channel): [B, S, H, W, C]."""

  def __init__(self, columns: int, features: int, *, rngs: nnx.Rngs):
    self.bn = common.batch_norm(columns * features, rngs=rngs)

  def __call__(self, x):
    b, s, h, w, c = x.shape
    y = self.bn(jnp.moveaxis(x, 1, 3).reshape(b, h, w, s * c))
    return jnp.moveaxis(y.reshape(b, h, w, s, c), 3, 1)


def column_max(x):
  """[B, S, H, W, C] -> [B, H, W, C]: max over columns (the reference's pool_from_groups)."""
  return pooling.max_over(x, 1)


class MnistXu(common.Representable):
  """SiCNN: S columns of one shared conv at S kernel scales, max over columns at the end (496,639 parameters).

  Follows ISosnovik/sesn models/mnist_xu.py (MNIST_XU_Pool) and
  models/impl/scale_modules.py (XU_SIConv2d): every conv has one 7x7 kernel
  (no bias), zero-padded to 23x23 and rescaled to each scale in SCALES
  (bilinear, align_corners=True, down; nearest up; centre crop/pad back to
  23x23), each rescaled kernel renormalised to the original's L1 norm per
  (in, out) pair. Column s of a layer convolves column s of the previous one
  with the kernel at scale s (padding 11). relu -> max pool -> BatchNorm
  with statistics per (column, channel), three times (32, 63, 95); then the
  max over columns and the harness's head.

  Representations: a column axis whose scales are ~1.49 apart is not a scale
  space Delta can shift at the factors it is evaluated at (0.5 is no
  integer power of 1.49), so each 'block{i}.conv' and 'block{i}' is the
  maximum over columns [B, H, W, C], the model's own scale-invariant
  projection (what the head reads after the last block), acted on
  spatially.

  Deliberate differences: kernels are rescaled by fixed resampling matrices
  (`interpolation`; nearest up-scaling as PyTorch >= 1.6, from the scale
  factor); an all-zero (in, out) kernel stays zero instead of 0/0; the
  columns of a layer are a loop of convs rather than one grouped conv (the
  same sums); NHWC; BatchNorm as `common.batch_norm`.

  Args:
    num_classes, in_channels, channels, hidden, dropout, upsample: as `MnistCNN`.
    scales: the kernel scales (one column each).
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=mc.WIDTHS, hidden: int = mc.HIDDEN, dropout: float = mc.DROPOUT,
               upsample: int = 1, scales=SCALES, rngs: nnx.Rngs):
    channels = mc.check_widths(channels)
    self.upsample = mc.check_upsample(upsample)
    widths = (in_channels, *channels)
    n = len(scales)
    self.convs = nnx.List([ColumnConv(widths[i], widths[i + 1], mc.KERNEL_SIZE,
                                      scales=scales, rngs=rngs) for i in range(3)])
    self.stages = nnx.List([
        mc.Stage(c, window=w, padding=p, norm=ColumnBatchNorm(n, c, rngs=rngs), rngs=rngs)
        for c, (w, p) in zip(channels, mc.pool_geometry(self.upsample))])
    self.head = mc.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout, rngs=rngs)

  def representations(self, x):
    """Column maxima [B, H, W, C] of each conv output and block output, then the logits."""
    out = {}
    x = mc.run_blocks(self.convs, self.stages, transforms.nearest_upsample(x, self.upsample), out,
                      view=column_max)
    out['logits'] = self.head(column_max(x))
    return out

  def scale_actions(self):
    return {**common.block_actions(3, reps.SPATIAL), 'logits': reps.INVARIANT}



mnist_xu_28 = common.register(MnistXu, 'mnist_xu_28', upsample=1)
mnist_xu_56 = common.register(MnistXu, 'mnist_xu_56', upsample=2)

MODELS = {b.__name__: b for b in (mnist_xu_28, mnist_xu_56)}  # This family's registry entries.
