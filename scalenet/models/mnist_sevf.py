"""Scale-equivariant vector fields (SEVF, Marcos et al. 2018) as in the published scale-MNIST benchmark.

A SEVF conv applies one kernel at 8 scales base**j (j = -4..3, base 1.26) by
rescaling the input (bilinear) to round(H base**j) pixels, convolving and
rescaling the response back. Its output at a pixel is the maximum response
over scales and the scale that gave it, encoded as an angle: a vector field
of magnitude relu(max) and angle theta_j = j (2 pi / 3) / 7.

We carry a vector field as polar maps (magnitude m >= 0, angle theta), both
[B, H, W, C]; its Cartesian components are (m cos theta, m sin theta).
Since every angle comes from an argmax, theta carries no gradient, and the
reference's magnitude sqrt(u^2 + v^2) is m itself (no square root of zero
to differentiate).

References:
  Marcos, Kellenberger, Lobry & Tuia, "Scale equivariance in CNNs with
  vector fields", ICML/FAIM 2018 workshop (arXiv:1807.11783).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scalenet import conv, pooling, representations as reps, transforms
from scalenet.models import common, interpolation, harness as mc

SCALAR_WIDTHS = mc.WIDTHS  # (32, 63, 95)
VECTOR_WIDTHS = (23, 45, 68)  # Two kernels per vector conv: narrower for ~the same count.
NUM_SMALL, NUM_BIG, BASE = 5, 3, 1.26  # Scales BASE**j, j = -(NUM_SMALL - 1) .. NUM_BIG.
ANGLE_RANGE = 2 * np.pi / 3  # Angles spread over [-4/7, 3/7] of this range.
VECTOR_BN_MOMENTUM = 0.5  # The reference's VectorBatchNorm (PyTorch convention).


def scales_and_angles(num_small=NUM_SMALL, num_big=NUM_BIG, base=BASE,
                      angle_range=ANGLE_RANGE) -> tuple[np.ndarray, np.ndarray]:
  """The scales base**j and the angle encoding each, j = -(num_small - 1) .. num_big."""
  n = num_small + num_big
  log_scales = np.linspace(-num_small + 1, num_big, n)
  return base**log_scales, log_scales * angle_range / (n - 1)


def conv_at_scale(x, kernel, scale: float, padding: int):
  """Rescale x [B, H, W, Cin] to round(size * scale), convolve, rescale back.

  Both rescalings are bilinear with align_corners=False (PyTorch's
  `F.interpolate(size=...)`, no antialiasing); the response is brought to
  the size the conv would give at scale 1, H + 2 padding - k + 1.
  """
  k = kernel.shape[0]
  sizes = x.shape[1:3]
  scaled = [int(round(n * scale)) for n in sizes]
  out = [n + 2 * padding - k + 1 for n in sizes]
  xs = interpolation.resample(x, interpolation.bilinear(sizes[0], scaled[0], False),
                              interpolation.bilinear(sizes[1], scaled[1], False))
  y = conv.conv2d(xs, kernel, padding=padding)
  return interpolation.resample(y, interpolation.bilinear(y.shape[1], out[0], False),
                                interpolation.bilinear(y.shape[2], out[1], False))


def max_over_scales(responses, angles):
  """[S, B, H, W, C] responses -> (max response, angle of the argmax scale)."""
  responses = jnp.stack(responses)
  idx = jnp.argmax(responses, axis=0)
  return pooling.max_over(responses, 0), jnp.asarray(angles, responses.dtype)[idx]


class ScalarSEVFConv(nnx.Module):
  """Scalar field -> vector field: (max response over scales, its angle)."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               rngs: nnx.Rngs):
    self.padding = kernel_size // 2
    self.scales, self.angles = (tuple(map(float, a)) for a in scales_and_angles())
    self.kernel = nnx.Param(mc.torch_uniform(in_features * kernel_size**2)(
        rngs.params(), (kernel_size, kernel_size, in_features, out_features)))

  def __call__(self, x):
    """x [B, H, W, Cin] -> (response, angle), both [B, H, W, Cout]."""
    return max_over_scales([conv_at_scale(x, self.kernel[...], float(s), self.padding)
                            for s in self.scales], self.angles)


class VectorSEVFConv(nnx.Module):
  """Vector field -> vector field.

  At the scale with angle a, the kernel pair (w_u, w_v) is rotated by a,
  (w_u cos a + w_v sin a, -w_u sin a + w_v cos a), and applied to the field's
  components (u, v); the two convolutions share every resampling, so they
  are one conv over the stacked [u, v] channels.
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               rngs: nnx.Rngs):
    self.padding = kernel_size // 2
    self.scales, self.angles = (tuple(map(float, a)) for a in scales_and_angles())
    init = mc.torch_uniform(in_features * kernel_size**2)
    shape = (kernel_size, kernel_size, in_features, out_features)
    self.kernel_u = nnx.Param(init(rngs.params(), shape))
    self.kernel_v = nnx.Param(init(rngs.params(), shape))

  def __call__(self, m, theta):
    """(magnitude, angle) [B, H, W, Cin] -> (response, angle) [B, H, W, Cout]."""
    uv = jnp.concatenate([m * jnp.cos(theta), m * jnp.sin(theta)], axis=-1)
    wu, wv = self.kernel_u[...], self.kernel_v[...]
    responses = []
    for s, a in zip(self.scales, self.angles):
      c, sn = float(np.cos(a)), float(np.sin(a))
      kernel = jnp.concatenate([wu * c + wv * sn, -wu * sn + wv * c], axis=2)
      responses.append(conv_at_scale(uv, kernel, float(s), self.padding))
    return max_over_scales(responses, self.angles)


def vector_max_pool(m, theta, window: int, padding: int = 0):
  """Max pool of the magnitude; the angle is taken from the same pixel.

  PyTorch's MaxPool2d geometry (stride = window, floor mode, padding never
  selected); in a tie the first pixel of the window in row-major order wins.
  """
  b, h, w, c = m.shape
  ho, wo = [(n + 2 * padding - window) // window + 1 for n in (h, w)]

  def windows(x, fill):
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                constant_values=fill)[:, :ho * window, :wo * window]
    x = x.reshape(b, ho, window, wo, window, c).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(b, ho, wo, c, window * window)

  mw = windows(m, -jnp.inf)
  idx = jnp.argmax(mw, axis=-1)[..., None]
  return (jnp.take_along_axis(mw, idx, -1)[..., 0],
          jnp.take_along_axis(windows(theta, 0.0), idx, -1)[..., 0])


class VectorBatchNorm(nnx.Module):
  """Divides a vector field by the standard deviation of its magnitude, per channel.

  No centring and no affine map: the angles are kept. In training the batch
  variance (biased, over B, H, W) is used and the running variance moves
  towards its unbiased version with `momentum` (PyTorch convention).
  """

  def __init__(self, features: int, *, momentum: float = VECTOR_BN_MOMENTUM,
               epsilon: float = 1e-5, use_running_average: bool = False):
    self.momentum, self.epsilon = momentum, epsilon
    self.use_running_average = use_running_average
    self.running_var = nnx.BatchStat(jnp.ones((features,)))

  def __call__(self, m, theta):
    if self.use_running_average:
      var = self.running_var[...]
    else:
      var = jnp.var(m, axis=(0, 1, 2))
      n = m.size // m.shape[-1]
      unbiased = jax.lax.stop_gradient(var) * n / max(n - 1, 1)
      self.running_var[...] = (1 - self.momentum) * self.running_var[...] + \
          self.momentum * unbiased
    return m / jnp.sqrt(self.epsilon + var), theta


class MnistSEVFScalar(common.Representable):
  """SEVF with scalar fields between layers (494,425 parameters).

  Follows ISosnovik/sesn models/mnist_sevf.py (MNIST_SEVF_Scalar) and
  models/impl/se_vector_fields.py (ScaleConvScalar, conv_scale): three
  ScaleConvScalar layers (7x7, no bias; 32, 63, 95) whose vector output is
  reduced at once to its magnitude relu(max response), each followed by max
  pool and BatchNorm (none after the third), then the harness's head with a
  biased first layer (the reference's 1x1 convs).

  Deliberate differences: the magnitude is relu(max response) directly (the
  reference's sqrt(u^2 + v^2) equals it); rescaling by fixed resampling
  matrices (`interpolation`); images are taken square-agnostic (each axis
  rescaled by its own size; the reference uses the width for both); NHWC;
  BatchNorm as `common.batch_norm`.

  Args:
    num_classes, in_channels, hidden, dropout, upsample: as `MnistCNN`.
    channels: widths of the three blocks.
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=SCALAR_WIDTHS, hidden: int = mc.HIDDEN,
               dropout: float = mc.DROPOUT, upsample: int = 1, rngs: nnx.Rngs):
    channels = mc.check_widths(channels)
    self.upsample = mc.check_upsample(upsample)
    widths = (in_channels, *channels)
    self.convs = nnx.List([ScalarSEVFConv(widths[i], widths[i + 1], mc.KERNEL_SIZE, rngs=rngs)
                           for i in range(3)])
    self.stages = nnx.List([mc.Stage(c, window=w, padding=p, norm=i < 2, rngs=rngs)
                            for i, (c, (w, p)) in enumerate(zip(
                                channels, mc.pool_geometry(self.upsample)))])
    self.head = mc.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout,
                        fc1_bias=True, rngs=rngs)

  def representations(self, x):
    """block{i}.conv: the max response over scales [B, H, W, C] (before relu)."""
    out = {}
    convs = [lambda z, c=c: c(z)[0] for c in self.convs]
    x = mc.run_blocks(convs, self.stages, transforms.nearest_upsample(x, self.upsample), out)
    out['logits'] = self.head(x)
    return out

  def scale_actions(self):
    return {**common.block_actions(3, reps.SPATIAL), 'logits': reps.INVARIANT}


class MnistSEVFVector(common.Representable):
  """SEVF with vector fields between layers (475,407 parameters used; the reference has 475,475).

  Follows ISosnovik/sesn models/mnist_sevf.py (MNIST_SEVF_Vector) and
  models/impl/se_vector_fields.py: ScaleConvScalar (1 -> 23), then two
  ScaleConvVector layers (23 -> 45 -> 68, a kernel pair each, no bias), each
  followed by a vector max pool (the magnitude decides, the angle follows)
  and, after the first two, VectorBatchNorm; the magnitude of the last
  field goes to the harness's head with a biased first layer.

  Representations: 'block{i}.conv' is the max response over scales and
  'block{i}' the magnitude of the block's output field, both [B, H, W, C],
  acted on spatially. The angle is left out: under a rescale it shifts by
  the scale change (a rotation of the field), which no action of the
  protocol describes.

  Deliberate differences: the reference's VectorBatchNorm creates a weight
  (68 parameters over the two layers) that its forward pass never uses; it
  is left out, so 475,407 parameters are created. Fields are polar (see the
  module docstring); rescaling by fixed resampling matrices; NHWC.

  Args:
    num_classes, in_channels, hidden, dropout, upsample: as `MnistCNN`.
    channels: widths (vector channels) of the three blocks.
  """

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1,
               channels=VECTOR_WIDTHS, hidden: int = mc.HIDDEN,
               dropout: float = mc.DROPOUT, upsample: int = 1, rngs: nnx.Rngs):
    channels = mc.check_widths(channels)
    self.upsample = mc.check_upsample(upsample)
    self.pools = tuple(mc.pool_geometry(self.upsample))
    k = mc.KERNEL_SIZE
    self.conv0 = ScalarSEVFConv(in_channels, channels[0], k, rngs=rngs)
    self.convs = nnx.List([VectorSEVFConv(channels[i], channels[i + 1], k, rngs=rngs)
                           for i in range(2)])
    self.norms = nnx.List([VectorBatchNorm(c) for c in channels[:2]])
    self.head = mc.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout,
                        fc1_bias=True, rngs=rngs)

  def representations(self, x):
    """Max responses and field magnitudes [B, H, W, C] per block, then the logits."""
    out = {}
    val, theta = self.conv0(transforms.nearest_upsample(x, self.upsample))
    for i in range(3):
      m, theta = vector_max_pool(nnx.relu(val), theta, *self.pools[i])
      if i < 2:
        m, theta = self.norms[i](m, theta)
      out[f'block{i}.conv'], out[f'block{i}'] = val, m
      if i < 2:
        val, theta = self.convs[i](m, theta)
    out['logits'] = self.head(m)
    return out

  def scale_actions(self):
    return {**common.block_actions(3, reps.SPATIAL), 'logits': reps.INVARIANT}



mnist_sevf_scalar_28 = common.register(MnistSEVFScalar, 'mnist_sevf_scalar_28', upsample=1)
mnist_sevf_scalar_56 = common.register(MnistSEVFScalar, 'mnist_sevf_scalar_56', upsample=2)
mnist_sevf_vector_28 = common.register(MnistSEVFVector, 'mnist_sevf_vector_28', upsample=1)
mnist_sevf_vector_56 = common.register(MnistSEVFVector, 'mnist_sevf_vector_56', upsample=2)

# This family's registry entries.
MODELS = {b.__name__: b for b in (
    mnist_sevf_scalar_28, mnist_sevf_scalar_56, mnist_sevf_vector_28, mnist_sevf_vector_56)}
