"""Deep Scale Spaces (DSS) as reimplemented in the published scale-MNIST benchmark.

Both variants lift to a 2-level Gaussian scale space (levels 2x apart in
scale, the input taken at scale 0.25) and convolve it with 7x7 kernels
dilated by 2**s at level s (one kernel per layer, no interaction between
levels). The vector variant keeps the scale axis through all three blocks
and takes the maximum over scales before the head; the scalar variant
takes the maximum over scales after every conv and lifts again before the
next. The study's two DSS variants take the vector layout: the deformable
DSS (`MnistDeformDSS`) and DSS v2 with its bilinear pyramid (`MnistDSSv2`).

References:
  Worrall & Welling, "Deep Scale-spaces: Equivariance Over Scale", NeurIPS 2019.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from scalenet import conv as conv_lib, layers, pooling, representations as reps
from scalenet import scale_convolution, scale_space, transforms
from scalenet.models import common, dss, mnist_cnn, harness as mc

NUM_SCALES = 2  # Levels of every lift.
BASE = 2  # Scale ratio between levels, and the dilation base.
ZERO_SCALE = 0.25  # Scale the input is taken to have.


def dilated_scale_conv(in_features: int, out_features: int, kernel_size: int, *,
                       base: int = BASE, rngs: nnx.Rngs) -> layers.ScaleConv:
  """The reference's Dconv2d with one kernel level: level s convolved with the
  kernel dilated by base**s, zero padding (k // 2) base**s, no bias, He-normal
  init; this is `layers.ScaleConv` with interaction 1, whose 'SAME' padding is
  the same. [B, S, H, W, Cin] -> [B, S, H, W, Cout]."""
  return layers.ScaleConv(in_features, out_features, kernel_size=kernel_size, base=base,
                          use_bias=False, kernel_init=mc.he_normal(in_features * kernel_size**2),
                          rngs=rngs)


def lift(x, num_scales: int = NUM_SCALES):
  """[B, H, W, C] -> [B, S, H, W, C]: the discrete Gaussian scale space (BesselConv2d)."""
  return scale_space.gaussian_lift(x, num_scales=num_scales, base=BASE, zero_scale=ZERO_SCALE)


class _DSSBase(common.Representable):
  """Blocks of dilated_scale_conv and the harness's head; subclasses say where scales are pooled."""

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=mc.WIDTHS, hidden: int = mc.HIDDEN, dropout: float = mc.DROPOUT,
               upsample: int = 1, num_scales: int = NUM_SCALES, rngs: nnx.Rngs):
    channels = mc.check_widths(channels)
    self.upsample = mc.check_upsample(upsample)
    if num_scales < 2:
      raise ValueError(f'num_scales must be >= 2; got {num_scales!r}.')
    self.num_scales = num_scales
    widths = (in_channels, *channels)
    self.convs = nnx.List([dilated_scale_conv(widths[i], widths[i + 1], mc.KERNEL_SIZE,
                                            rngs=rngs) for i in range(3)])
    self.stages = nnx.List([mc.Stage(c, window=w, padding=p, rngs=rngs) for c, (w, p)
                            in zip(channels, mc.pool_geometry(self.upsample))])
    self.head = mc.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout, rngs=rngs)


class MnistDSSVector(_DSSBase):
  """DSS keeping the scale axis: lift -> 3 scale-conv blocks -> max over scales -> head (494,359 parameters).

  Follows ISosnovik/sesn models/mnist_dss.py (MNIST_DSS_Vector, with
  n_scales=2 and scale_sizes=[1, 1, 1]) and models/impl/deep_scale_space.py
  (BesselConv2d, Dconv2d): the Gaussian lift (base 2, zero scale 0.25, 2
  levels), then Dconv2d (7x7, no bias, He-normal init) -> relu -> max pool
  per level -> BatchNorm3d (statistics shared by the levels), three times
  (32, 63, 95), the maximum over scales and the harness's head.

  Representations: 'lift', every 'block{i}.conv' and 'block{i}' are
  scale-space tensors [B, S, H, W, C] with levels 2 apart; logits invariant.

  Deliberate differences: the lift is `scale_space.gaussian_lift`, whose
  discrete Gaussian is truncated where the tails hold < 1e-5 of its mass
  (radius 3 here) instead of at the reference's fixed radius
  4 ceil(sqrt(t)) = 4 (every tap differs by < 1e-5); Dconv2d is
  `scale_conv` (identical for one kernel level); NHWC; BatchNorm as
  `common.batch_norm`.

  Args:
    num_classes, in_channels, channels, hidden, dropout, upsample: as `MnistCNN`.
    num_scales: levels of the lift.
  """

  def representations(self, x):
    out = {'lift': lift(transforms.nearest_upsample(x, self.upsample), self.num_scales)}
    z = mc.run_blocks(self.convs, self.stages, out['lift'], out)
    out['logits'] = self.head(scale_convolution.scale_pool(z, 'max'))
    return out

  def scale_actions(self):
    space = reps.scale_space(BASE)
    return {'lift': space, **common.block_actions(3, space), 'logits': reps.INVARIANT}


class MnistDSSScalar(_DSSBase):
  """DSS lifting and projecting at every block (494,359 parameters).

  Follows ISosnovik/sesn models/mnist_dss.py (MNIST_DSS_Scalar, with
  n_scales=2, scale_sizes=[1, 1, 1]): each block is a Gaussian lift of its
  input (2 levels) -> Dconv2d -> max over scales -> relu -> max pool ->
  BatchNorm2d, three times (32, 63, 95), then the harness's head.

  Representations: 'block{i}.conv' is the Dconv2d output, a scale-space
  tensor [B, S, H, W, C] with levels 2 apart; 'block{i}' the projected map
  [B, H, W, C] after BatchNorm, acted on spatially; logits invariant. There
  is no separate 'lift' (each block lifts its own input).

  Deliberate differences: as `MnistDSSVector`.

  Args:
    as `MnistDSSVector`.
  """

  def representations(self, x):
    out = {}
    x = transforms.nearest_upsample(x, self.upsample)
    for i, (conv, stage) in enumerate(zip(self.convs, self.stages)):
      out[f'block{i}.conv'] = z = conv(lift(x, self.num_scales))
      out[f'block{i}'] = x = stage(scale_convolution.scale_pool(z, 'max'))
    out['logits'] = self.head(x)
    return out

  def scale_actions(self):
    return {**{f'block{i}{suffix}': action for i in range(3) for suffix, action in
               (('.conv', reps.scale_space(BASE)), ('', reps.SPATIAL))},
            'logits': reps.INVARIANT}

mnist_dss_vector_28 = common.register(MnistDSSVector, 'mnist_dss_vector_28', upsample=1)
mnist_dss_vector_56 = common.register(MnistDSSVector, 'mnist_dss_vector_56', upsample=2)
mnist_dss_scalar_28 = common.register(MnistDSSScalar, 'mnist_dss_scalar_28', upsample=1)
mnist_dss_scalar_56 = common.register(MnistDSSScalar, 'mnist_dss_scalar_56', upsample=2)


class MnistDeformDSS(MnistDSSVector):
  """`MnistDSSVector` with deformable scale convolutions (the study's `deform_dss` in the harness).

  What differs from `MnistDSSVector` (mnist_dss_vector_28): every
  Dconv2d is a deformable scale conv (`layers.DeformScaleConv`, 7x7, one
  kernel level, no bias, the reference DSS's He-normal init): level s samples
  its taps around the grid dilated by 2**s at offsets predicted by a 3x3
  scale conv (weights tied across levels, zero-initialised, so training
  starts from DSS) and multiplied by 2**s, so the layer keeps the scale
  structure. To pay for the branches at the table's budget the widths are
  `mnist_cnn.STUDY_WIDTHS` = (29, 57, 86): 491,134 parameters, 0.69% below
  mnist_cnn_28. Lift, pooling, head and protocol are mnist_dss_vector_28's.

  Representations: as `MnistDSSVector`.
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=mnist_cnn.STUDY_WIDTHS, hidden: int = mc.HIDDEN,
               dropout: float = mc.DROPOUT, upsample: int = 1, num_scales: int = NUM_SCALES,
               rngs: nnx.Rngs):
    super().__init__(num_classes, in_channels=in_channels, channels=channels, hidden=hidden,
                     dropout=dropout, upsample=upsample, num_scales=num_scales, rngs=rngs)
    widths = (in_channels, *mc.check_widths(channels))
    k = mc.KERNEL_SIZE
    self.convs = nnx.List([
        layers.DeformScaleConv(widths[i], widths[i + 1], kernel_size=k, base=BASE,
                               kernel_init=mc.he_normal(widths[i] * k**2), use_bias=False,
                               rngs=rngs)
        for i in range(3)])


class MnistDSSv2(common.Representable):
  """DSS v2 in the harness: a bilinear pyramid through tied plain convs (the study's `dss_v2`).

  What differs from `MnistDSSVector` (mnist_dss_vector_28): the lift is
  `scale_space.bilinear_lift` (level k is the input down-sampled bilinearly
  by 2**k, no smoothing: 28x28 and 14x14) instead of the Gaussian scale
  space, and each level is convolved at its own resolution with the same
  undilated 7x7 kernel (no bias, He-normal init), as the study's DSS v2.
  Every block is conv -> relu -> max pool -> BatchNorm, the statistics
  shared by the levels (all their pixels normalised as one set). The last
  pool is the harness's 4x4 / padding 2 at level 0 and 4/2**k / 2/2**k at
  level k, so every level ends on the head's 2x2 grid; then the maximum over
  levels and the harness's head. Same widths and parameter count
  (494,359) as mnist_dss_vector_28.

  Representations: every level shown on level 0's grid (nearest
  up-sampling), scale-space tensors [B, S, H, W, C] with levels 2 apart
  ('lift', 'block{i}.conv', 'block{i}'); logits invariant. After the last
  pool both levels are 2x2, so there the levels are no longer 2 apart in
  resolution: Delta of 'block2' measures that too.
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=mc.WIDTHS, hidden: int = mc.HIDDEN, dropout: float = mc.DROPOUT,
               upsample: int = 1, rngs: nnx.Rngs):
    channels = mc.check_widths(channels)
    self.upsample = mc.check_upsample(upsample)
    self.num_scales = NUM_SCALES
    widths = (in_channels, *channels)
    k = mc.KERNEL_SIZE
    self.kernels = nnx.List([
        nnx.Param(mc.he_normal(widths[i] * k**2)(rngs.params(), (k, k, widths[i], widths[i + 1])))
        for i in range(3)])
    self.norms = nnx.List([common.batch_norm(c, rngs=rngs) for c in channels])
    self.head = mc.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout, rngs=rngs)

  def _pools(self, block: int, level: int) -> tuple[int, int]:
    window, padding = mc.pool_geometry(self.upsample)[block]
    if block < 2:
      return window, padding
    return window // BASE**level, padding // BASE**level

  def representations(self, x):
    x = transforms.nearest_upsample(x, self.upsample)
    levels = scale_space.bilinear_lift(x, num_scales=self.num_scales, base=BASE)
    out = {'lift': dss._on_finest_grid(levels)}
    for i, (kernel, norm) in enumerate(zip(self.kernels, self.norms)):
      convs = [conv_lib.conv2d(z, kernel[...], padding=mc.KERNEL_SIZE // 2) for z in levels]
      pooled = [pooling.max_pool(nnx.relu(y), *self._pools(i, k)) for k, y in enumerate(convs)]
      flat = norm(jnp.concatenate([p.reshape(-1, p.shape[-1]) for p in pooled]))
      levels, start = [], 0
      for p in pooled:
        n = p.size // p.shape[-1]
        levels.append(flat[start:start + n].reshape(p.shape))
        start += n
      out[f'block{i}.conv'] = dss._on_finest_grid(convs)
      out[f'block{i}'] = dss._on_finest_grid(levels)
    out['logits'] = self.head(jnp.max(jnp.stack(levels, axis=1), axis=1))
    return out

  def scale_actions(self):
    space = reps.scale_space(BASE)
    return {'lift': space, **common.block_actions(3, space), 'logits': reps.INVARIANT}


mnist_deform_dss_28 = common.register(MnistDeformDSS, 'mnist_deform_dss_28', upsample=1)
mnist_dss_v2_28 = common.register(MnistDSSv2, 'mnist_dss_v2_28', upsample=1)

# This family's registry entries.
MODELS = {b.__name__: b for b in (
    mnist_dss_vector_28, mnist_dss_vector_56, mnist_dss_scalar_28, mnist_dss_scalar_56,
    mnist_deform_dss_28, mnist_dss_v2_28)}
