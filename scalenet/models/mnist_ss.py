"""SS-CNN on scale-MNIST as the published SESN harness runs it (Ghosh & Gupta 2019).

  model = get_model('mnist_ss_28', rngs=nnx.Rngs(0))   # 486,278 parameters

Follows ISosnovik/sesn, models/mnist_ss.py (MNIST_SS, mnist_ss_28,
mnist_ss_56) and models/impl/scale_steerable.py (ScaleConv_steering,
steerable_conv). Each conv learns complex coefficients [K, Cin, Cout, P] of
K = 3 log-radial frequencies x P = 9 directions (`bases.log_radial`), builds one
kernel per size in `kernel_sizes` by steering the coefficients to the scale
size / base_size and cropping the filters to that size, convolves with
each (zero padding size // 2) and keeps the maximum over sizes, then relu.

Deliberate differences:
  * Parameters the reference creates but its forward pass never uses are left
    out: each conv's `const_real` [Cout, Cin] (30 + 1,800 + 5,400) and the
    unused BatchNorm `bn3` (180). So 486,278 parameters instead of the
    reference's 493,688.
  * The kernels of all sizes are zero-padded to the largest and applied in
    one convolution (identical to one convolution per size with its own
    padding).
  * NHWC layouts; fc1 is the reference's 1x1 conv on the flattened features
    as a dense layer (the same parameters).
  * The head, pooling and up-sampling are `harness`'s (which names its
    own differences); fc1 keeps the reference's bias.

References:
  Ghosh & Gupta, "Scale Steerable Filters for Locally Scale-Invariant
  Convolutional Neural Networks", ICML workshop 2019.
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks", ICLR 2020.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scalenet import pooling, representations as reps, transforms
from scalenet.bases import log_radial
from scalenet.models import common, harness
from scalenet.layers import lift_conv


def steered_kernels(mult_real, mult_imag, real, imag, phases) -> jax.Array:
  """[k, k, Cin, Cout] kernel at one scale.

  Args:
    mult_real, mult_imag: coefficients [K, Cin, Cout, P].
    real, imag: filters [K, P, k, k], cropped to this scale's size.
    phases: [K] steering angles theta_k of this scale.

  Returns:
    sum_k Re(m_k e^{i theta_k}) . real_k - Im(m_k e^{i theta_k}) . imag_k.
  """
  cos, sin = jnp.cos(phases)[:, None, None, None], jnp.sin(phases)[:, None, None, None]
  m_re = mult_real * cos - mult_imag * sin
  m_im = mult_real * sin + mult_imag * cos
  return (jnp.einsum('kiop,kpyx->yxio', m_re, real)
          - jnp.einsum('kiop,kpyx->yxio', m_im, imag))


class ScaleSteeringConv(nnx.Module):
  """Max over sizes of convs with steered log-radial kernels, then relu.

  [B, H, W, Cin] -> [B, H, W, Cout]; `pre_activation(x)` is the maximum
  before the relu.
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_sizes, base_size: int = 11,
               rngs: nnx.Rngs):
    kernel_sizes = tuple(int(k) for k in kernel_sizes)
    real, imag, k_eff = log_radial.filter_bank(max(kernel_sizes))
    n = max(kernel_sizes)
    pad = lambda f, k: np.pad(log_radial.crop_centre(f, k), ((0, 0), (0, 0), ((n - k) // 2,) * 2,
                                                             ((n - k) // 2,) * 2))
    # Filters cropped to each size then zero-padded back: [S, K, P, n, n].
    self.real = nnx.data(jnp.asarray(np.stack([pad(real, k) for k in kernel_sizes])))
    self.imag = nnx.data(jnp.asarray(np.stack([pad(imag, k) for k in kernel_sizes])))
    self.phases = nnx.data(jnp.asarray(np.stack(
        [log_radial.steering_phases(k_eff, k / base_size) for k in kernel_sizes]), jnp.float32))
    num_k, num_p = real.shape[:2]
    # The reference's init: U(+-sqrt(2 / (P Cin Cout))) for unit-norm filters.
    bound = np.sqrt(2.0 / (num_p * in_features * out_features))
    shape = (num_k, in_features, out_features, num_p)
    self.mult_real = nnx.Param(jax.random.uniform(rngs.params(), shape, minval=-bound,
                                                  maxval=bound))
    self.mult_imag = nnx.Param(jax.random.uniform(rngs.params(), shape, minval=-bound,
                                                  maxval=bound))

  def kernels(self) -> jax.Array:
    """[S, n, n, Cin, Cout]: one kernel per size, zero-padded to the largest n."""
    return jnp.stack([steered_kernels(self.mult_real[...], self.mult_imag[...], self.real[s],
                                      self.imag[s], self.phases[s])
                      for s in range(self.real.shape[0])])

  def pre_activation(self, x):
    kern = self.kernels()
    return pooling.max_over(lift_conv(x, kern, kern.shape[1] // 2), 1)

  def __call__(self, x):
    return nnx.relu(self.pre_activation(x))


class MNISTSS(common.Representable):
  """Three scale-steering convs (each with its relu), max pools and BatchNorms, then the head.

  Args:
    num_classes: logits size.
    kernel_sizes: the sizes each conv tries (28: 5..13, 56: 7..17).
    base_size: the size of scale 1 (reference: 11).
    pool_size: last max pool's window (padding 2): 4 for 28, 8 for 56 inputs.
    upsample: integer nearest up-sampling of the input.
    channels, hidden, dropout: widths (reference: 30, 60, 90; 256) and dropout.
    in_channels: image channels.
  """

  def __init__(self, num_classes: int = 10, *, kernel_sizes=(5, 7, 9, 11, 13),
               base_size: int = 11, pool_size: int = 4, upsample: int = 1,
               channels=(30, 60, 90), hidden: int = 256, dropout: float = 0.7,
               in_channels: int = 1, rngs: nnx.Rngs):
    channels = harness.check_widths(channels)
    upsample = harness.check_upsample(upsample)
    self.pool_size, self.upsample = pool_size, upsample
    widths = (in_channels, *channels)
    self.convs = nnx.List([ScaleSteeringConv(widths[i], widths[i + 1],
                                             kernel_sizes=kernel_sizes, base_size=base_size,
                                             rngs=rngs) for i in range(3)])
    self.bns = nnx.List([common.batch_norm(c, rngs=rngs) for c in channels])
    self.head = harness.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout,
                                  fc1_bias=True, rngs=rngs)

  def representations(self, x):
    """'block{i}.conv' (max over sizes, before relu) and 'block{i}' [B, H, W, C], then 'logits'."""
    out = {}
    x = transforms.nearest_upsample(x, self.upsample)
    for i in range(3):
      out[f'block{i}.conv'] = x = self.convs[i].pre_activation(x)
      x = nnx.relu(x)
      x = pooling.max_pool(x, 2) if i < 2 else pooling.max_pool(x, self.pool_size, 2)
      out[f'block{i}'] = x = self.bns[i](x)
    out['logits'] = self.head(x)
    return out

  def scale_actions(self):
    return {**common.block_actions(3, reps.SPATIAL), 'logits': reps.INVARIANT}


mnist_ss_28 = common.register(MNISTSS, 'mnist_ss_28', kernel_sizes=(5, 7, 9, 11, 13),
                                   pool_size=4, upsample=1)
mnist_ss_56 = common.register(MNISTSS, 'mnist_ss_56', kernel_sizes=(7, 9, 11, 13, 15, 17),
                                   pool_size=8, upsample=2)

MODELS = {b.__name__: b for b in (mnist_ss_28, mnist_ss_56)}  # This family's registry entries.
