"""SESN models of the published scale-MNIST table (Sosnovik et al., ICLR 2020, Table 2).

  model = get_model('mnist_ses_vector_28', rngs=nnx.Rngs(0))   # 494,549 parameters
  model = get_model('mnist_ses_scalar_56', rngs=nnx.Rngs(0), channels=(4, 8, 8), hidden=16)

Eight variants: scalar / vector, 28 / 56 (the 56 ones up-sample the 28x28 input
2x, nearest, inside the model), and the `p` ones, tuned for training with
scale augmentation. They differ only in the basis (scales, kernel size,
width multiplier) and the last pooling window (`VARIANTS`, fixed per name;
widths, hidden size and dropout may be overridden); all have the reference's
494,549 trainable parameters (BatchNorm scale and bias counted).

Follows ISosnovik/sesn, models/mnist_ses.py (MNIST_SES_Scalar, MNIST_SES_V and
the eight factories) and models/impl/ses_conv.py (SESConv_Z2_H, SESConv_H_H
with scale_size 1, SESMaxProjection). Deliberate differences:
  * NHWC / [B, S, H, W, C] layouts.
  * Basis coefficients are stored as [F, Cin, Cout] (the reference's
    [Cout, Cin, F]); initialisation is the reference's (PyTorch's
    kaiming_uniform with a = sqrt(5): U(+-1/sqrt(fan_in)), zero conv biases).
  * The head, pooling and up-sampling are `harness`'s (which names its
    own differences: BatchNorm momentum, flattening order).
The basis is `hermite.steerable_hermite_basis` (the reference's basis B;
see that module for its scale rounding). The scale-space representations
declare the nominal ratio q = factor^(1/(num_scales-1)) between levels, not
the ratios of the rounded scales (e.g. 2.83 / 2 instead of sqrt(2)).

What is exactly equivariant. Consecutive levels are q apart with q not an
integer, and their kernels live on different truncated grids, so the network
is equivariant to rescaling by q only approximately (layer-wise Delta
measures how far). Exact, up to float rounding, and tested: in all eight
variants the last scale is an integer n (2 or 3) times the first, after
rounding, and the last level's grid holds exactly the multiples of n of the
first level's support; so its kernel sampled at n (a, b) is the first level's
kernel at (a, b) divided by n^2, and for U_n the zero-insertion up-sampling
(x at multiples of n, zeros elsewhere) every SESConv C without its bias
satisfies C(U_n x)[level S-1][n p] = C(x)[level 0][p] / n^2.

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks", ICLR 2020.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from scalenet import layers, pooling, representations as reps, transforms
from scalenet.bases import hermite
from scalenet.models import common, harness


def ses_conv(in_features: int, out_features: int, basis: np.ndarray, *, mode: str,
             rngs: nnx.Rngs) -> layers.SteerableConv:
  """The reference's steerable conv: `layers.SteerableConv` with one bias per
  channel, zero padding k // 2, stride 1, and PyTorch's uniform init of the
  coefficients (drawn as the reference's [F, Cin, Cout]).

  mode='lift': [B, H, W, Cin] -> [B, S, H, W, Cout] (SESConv_Z2_H);
  mode='levels': [B, S, H, W, Cin] -> [B, S, H, W, Cout] (SESConv_H_H with
  scale_size 1: level j only sees input level j, through the scale-j basis).
  """
  if mode not in ('lift', 'levels'):
    raise ValueError(f"ses_conv mode must be 'lift' or 'levels'; got {mode!r}.")
  nf = basis.shape[0]

  def init(key, shape):  # [1, Cin, Cout, F], drawn in the reference's layout.
    w = harness.torch_uniform(in_features * nf)(key, (nf, in_features, out_features))
    return jnp.moveaxis(w, 0, -1).reshape(shape)
  return layers.SteerableConv(in_features, out_features, basis,
                              mode='lift' if mode == 'lift' else 'group',
                              padding=basis.shape[-1] // 2, kernel_init=init, rngs=rngs)


class MNISTSES(common.Representable):
  """SESN for scale-MNIST: three steerable-conv blocks and the shared head.

  scalar: every block lifts its input to the scale space and projects it
    back at once (max over scales): conv -> max over S -> relu -> max pool
    -> BatchNorm, with plain [B, H, W, C] maps between blocks.
  vector: block 0 lifts, block 1 convolves level by level, block 2
    convolves level by level and projects; pooling and BatchNorm act per
    level (shared statistics, as BatchNorm3d) in between.
  Pooling: 2x2 after blocks 0 and 1, then pool_size with padding 2 (4 for 28,
  8 for 56 inputs), which leaves 2x2 maps.

  Args:
    num_classes: logits size.
    vector: the vector variant (else scalar).
    min_scale, factor, num_scales: basis scales, `hermite.reference_scales`.
    kernel_size: size of every kernel (all levels are zero-padded to it).
    mult: width multiplier of the Hermite basis (`bases.hermite`).
    pool_size: window of the last max pool.
    upsample: integer up-sampling of the input (nearest) before block 0.
    channels: widths of the three blocks (reference: 32, 63, 95).
    hidden: width of the head's hidden layer (reference: 256).
    dropout: the head's dropout rate.
    num_funcs: basis functions per scale (reference: effective size 7^2 = 49).
    max_order: Hermite orders n + m <= max_order.
    in_channels: image channels.
  """

  def __init__(self, num_classes: int = 10, *, vector: bool, min_scale: float,
               factor: float, num_scales: int, kernel_size: int, mult: float,
               pool_size: int = 4, upsample: int = 1, channels=(32, 63, 95),
               hidden: int = 256, dropout: float = 0.7, num_funcs: int = 49,
               max_order: int = 4, in_channels: int = 1, rngs: nnx.Rngs):
    channels = harness.check_widths(channels)
    upsample = harness.check_upsample(upsample)
    self.scales = hermite.reference_scales(min_scale, factor, num_scales)
    self.ratio = hermite.scale_ratio(factor, num_scales)
    self.vector, self.pool_size, self.upsample = vector, pool_size, upsample
    basis = hermite.steerable_hermite_basis(kernel_size, self.scales, num_funcs=num_funcs,
                                              max_order=max_order, mult=mult)
    widths = (in_channels, *channels)
    modes = ('lift', 'levels', 'levels') if vector else ('lift',) * 3
    self.convs = nnx.List([ses_conv(widths[i], widths[i + 1], basis, mode=modes[i], rngs=rngs)
                           for i in range(3)])
    self.bns = nnx.List([common.batch_norm(c, rngs=rngs) for c in channels])
    self.head = harness.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout,
                                  rngs=rngs)

  def _projects(self, i: int) -> bool:
    return not self.vector or i == 2

  def representations(self, x):
    """'block{i}.conv' [B, S, H, W, C] and 'block{i}' (per-level or projected), then 'logits'."""
    out = {}
    x = transforms.nearest_upsample(x, self.upsample)
    for i, (conv_i, bn) in enumerate(zip(self.convs, self.bns)):
      out[f'block{i}.conv'] = x = conv_i(x)
      if self._projects(i):
        x = pooling.max_over(x, 1)
      x = nnx.relu(x)
      x = pooling.max_pool(x, 2) if i < 2 else pooling.max_pool(x, self.pool_size, 2)
      out[f'block{i}'] = x = bn(x)
    out['logits'] = self.head(x)
    return out

  def scale_actions(self):
    space = reps.scale_space(self.ratio)
    actions = {}
    for i in range(3):
      actions[f'block{i}.conv'] = space
      actions[f'block{i}'] = reps.SPATIAL if self._projects(i) else space
    return {**actions, 'logits': reps.INVARIANT}


# name: (vector, min_scale, factor, num_scales, kernel_size, mult, upsample)
# as in the reference's factories (all: max_order 4, dropout 0.7, basis B).
VARIANTS = {
    'mnist_ses_scalar_28': (False, 1.7, 3.0, 4, 15, 1.5, 1),
    'mnist_ses_scalar_28p': (False, 1.5, 3.0, 4, 13, 1.4, 1),
    'mnist_ses_scalar_56': (False, 2.0, 2.0, 3, 15, 1.4, 2),
    'mnist_ses_scalar_56p': (False, 1.0, 3.0, 3, 17, 1.4, 2),
    'mnist_ses_vector_28': (True, 1.5, 3.0, 3, 13, 1.5, 1),
    'mnist_ses_vector_28p': (True, 1.5, 3.0, 3, 15, 1.4, 1),
    'mnist_ses_vector_56': (True, 2.0, 2.0, 4, 15, 1.5, 2),
    'mnist_ses_vector_56p': (True, 1.5, 2.0, 4, 13, 1.4, 2),
}


def variant_kwargs(name: str) -> dict:
  """The reference hyperparameters of variant `name` as MNISTSES keyword arguments."""
  vector, min_scale, factor, num_scales, size, mult, up = VARIANTS[name]
  return dict(vector=vector, min_scale=min_scale, factor=factor, num_scales=num_scales,
              kernel_size=size, mult=mult, upsample=up, pool_size=4 * up)


def _factory(name: str):
  return common.register(MNISTSES, name, **variant_kwargs(name))


mnist_ses_scalar_28 = _factory('mnist_ses_scalar_28')
mnist_ses_scalar_28p = _factory('mnist_ses_scalar_28p')
mnist_ses_scalar_56 = _factory('mnist_ses_scalar_56')
mnist_ses_scalar_56p = _factory('mnist_ses_scalar_56p')
mnist_ses_vector_28 = _factory('mnist_ses_vector_28')
mnist_ses_vector_28p = _factory('mnist_ses_vector_28p')
mnist_ses_vector_56 = _factory('mnist_ses_vector_56')
mnist_ses_vector_56p = _factory('mnist_ses_vector_56p')

# This family's registry entries.
MODELS = {b.__name__: b for b in (
    mnist_ses_scalar_28, mnist_ses_scalar_28p, mnist_ses_scalar_56, mnist_ses_scalar_56p,
    mnist_ses_vector_28, mnist_ses_vector_28p, mnist_ses_vector_56, mnist_ses_vector_56p)}
