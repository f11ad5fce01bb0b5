"""DISCO on scale-MNIST (Sosnovik, Moskalev & Smeulders, BMVC 2021): SESN on the DISCO basis.

  model = get_model('mnist_disco', rngs=nnx.Rngs(0))    # 494,549 parameters

Follows ISosnovik/disco, models/mnist_disco_models.py (MNIST_DISCO,
mnist_disco) with the basis of models/basis/disco.py (DISCOBasisB), computed
by `scalenet.bases.disco` (a closed-form minimiser of the reference's basis
loss; see there) and cached as .npy under `basis_dir`. Defaults are the
reference's Scale-MNIST run of exp_mnist.sh (basis_min_scale 1.9,
basis_mult 1.5); its "+" run (scale augmentation) uses mult=1.9.

Deliberate differences:
  * NHWC / [B, S, H, W, C] layouts: the head's dense layer sees the 2 x 2 x C3
    features flattened in (H, W, C) order, not (C, H, W); the same count.
  * Initialisation as in `mnist_ses`; the head, pooling and up-sampling are
    `harness`'s (which names its own differences).
  * The scale-space representations declare the nominal ratio 2^(1/3) between
    levels; the basis is solved for the rounded scales 1, 1.26, 1.59, 2.

References:
  Sosnovik, Moskalev & Smeulders, "DISCO: accurate Discrete Scale
  Convolutions", BMVC 2021.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scalenet import pooling, representations as reps, transforms
from scalenet.bases import disco, hermite
from scalenet.models import common, harness
from scalenet.models.mnist_ses import ses_conv

DEFAULT_BASIS_DIR = 'data/disco'


def window_pool(x: jax.Array, window: int, stride: int, op: str) -> jax.Array:
  """Unpadded max or average pooling of [B, H, W, C] or per level of [B, S, H, W, C]."""
  lead = x.ndim - 3
  dims = (1,) * lead + (window, window, 1)
  strides = (1,) * lead + (stride, stride, 1)
  if op == 'max' and stride == window:
    return pooling.max_pool(x, window)
  if op == 'max':
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, 'VALID')
  return jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, 'VALID') / window**2


class MNISTDISCO(common.Representable):
  """Up-sample 2x -> lift -> two level-wise convs -> max over scales -> pooling -> head.

  Blocks 0 and 1: conv -> relu -> 2x2 average pool per level -> BatchNorm
  (statistics shared over levels, as BatchNorm3d). Block 2: conv -> max over
  scales -> relu -> max pool (pool_size - 1, stride 1) -> average pool
  (2, stride 4) -> BatchNorm, which leaves 2 x 2 maps for 56 x 56 inputs.

  Args:
    num_classes: logits size.
    kernel_size: size of every kernel (reference: 15).
    effective_size: the DISCO proxy grid (effective_size^2 basis functions).
    min_scale, mult, max_order: the Hermite functions expressed in the proxy.
    factor, num_scales: basis scales round(factor^(i/(num_scales-1)), 2).
    pool_size: the last max pool's window + 1 (reference: 8).
    upsample: integer nearest up-sampling of the input (reference: 2).
    channels, hidden, dropout: widths of the blocks and the head.
    in_channels: image channels.
    basis_dir: where the DISCO proxy is cached (None: not cached).
  """

  def __init__(self, num_classes: int = 10, *, kernel_size: int = 15,
               effective_size: int = 7, min_scale: float = 1.9, mult: float = 1.5,
               max_order: int = 4, factor: float = 2.0, num_scales: int = 4,
               pool_size: int = 8, upsample: int = 2, channels=(32, 63, 95),
               hidden: int = 256, dropout: float = 0.7, in_channels: int = 1,
               basis_dir: str | None = DEFAULT_BASIS_DIR, rngs: nnx.Rngs):
    channels = harness.check_widths(channels)
    upsample = harness.check_upsample(upsample)
    self.scales = hermite.reference_scales(1.0, factor, num_scales)
    self.ratio = hermite.scale_ratio(factor, num_scales)
    self.pool_size, self.upsample = pool_size, upsample
    basis = disco.disco_basis(kernel_size, self.scales, effective_size=effective_size,
                                    min_scale=min_scale, mult=mult, max_order=max_order,
                                    cache_dir=basis_dir)
    widths = (in_channels, *channels)
    self.convs = nnx.List([ses_conv(widths[i], widths[i + 1], basis,
                                    mode='lift' if i == 0 else 'levels', rngs=rngs)
                           for i in range(3)])
    self.bns = nnx.List([common.batch_norm(c, rngs=rngs) for c in channels])
    self.head = harness.MLPHead(4 * channels[-1], hidden, num_classes, dropout=dropout,
                                  rngs=rngs)

  def representations(self, x):
    """'block{i}.conv' [B, S, H, W, C]; 'block0', 'block1' per level; 'block2' [B, 2, 2, C]."""
    out = {}
    x = transforms.nearest_upsample(x, self.upsample)
    for i in range(2):
      out[f'block{i}.conv'] = x = self.convs[i](x)
      out[f'block{i}'] = x = self.bns[i](window_pool(nnx.relu(x), 2, 2, 'avg'))
    out['block2.conv'] = x = self.convs[2](x)
    x = window_pool(nnx.relu(pooling.max_over(x, 1)), self.pool_size - 1, 1, 'max')
    out['block2'] = x = self.bns[2](window_pool(x, 2, 4, 'avg'))
    out['logits'] = self.head(x)
    return out

  def scale_actions(self):
    space = reps.scale_space(self.ratio)
    return {'block0.conv': space, 'block0': space, 'block1.conv': space, 'block1': space,
            'block2.conv': space, 'block2': reps.SPATIAL, 'logits': reps.INVARIANT}


mnist_disco = common.register(MNISTDISCO, 'mnist_disco')

MODELS = {b.__name__: b for b in (mnist_disco,)}  # This family's registry entries.
