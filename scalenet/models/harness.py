"""Pieces shared by the published scale-MNIST models (ISosnovik/sesn, models/mnist_*.py).

Every model of that harness is three conv blocks then one head:

  [2x nearest up-sampling, the _56 variants]
  conv -> relu -> max pool 2 -> BatchNorm
  conv -> relu -> max pool 2 -> BatchNorm
  conv -> relu -> max pool 4 (8 for _56), padding 2 -> BatchNorm   (-> 2x2 maps)
  flatten -> Linear(4 C3, 256) -> BatchNorm1d -> relu -> Dropout(0.7) -> Linear(256, 10)

Pooling is PyTorch's `MaxPool2d` (stride = window, floor mode, -inf
padding); initialisations are PyTorch's defaults unless a model's own
reference sets them. BatchNorm is `common.batch_norm` (momentum 0.9, PyTorch's
0.1; Flax keeps the biased batch variance in its running average where
PyTorch keeps the unbiased one).

Checked once against the reference code itself (torch 2.14 on CPU; weights
and BatchNorm statistics copied, inference mode, uniform random 28x28
inputs): the logits of mnist_cnn_28/_56, mnist_kanazawa_28, mnist_xu_28,
mnist_sevf_scalar_28, mnist_sevf_vector_56, mnist_dss_vector_28 and
mnist_dss_scalar_56 agree to < 5e-6 relative, and each instantiated
reference model has the parameter count pinned in tests/test_zoo_baselines.py
(SEVF vector: 68 more, its unused VectorBatchNorm weights).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from scalenet import _checks, conv, pooling, representations as reps, transforms
from scalenet.models import common

WIDTHS = (32, 63, 95)  # C1, C2, C3 of the reference's plain CNN.
HIDDEN = 256  # Width of the head's hidden layer.
DROPOUT = 0.7  # Dropout rate of the head.
KERNEL_SIZE = 7  # Spatial kernel size of every conv block.


def check_widths(channels) -> tuple[int, int, int]:
  """The three block widths; the harness's models have exactly three blocks."""
  channels = tuple(channels)
  if len(channels) != 3:
    raise ValueError(f'channels must give the widths of the 3 blocks; got {channels!r}.')
  return tuple(_checks.positive_int(c, 'channels[i]') for c in channels)


def check_upsample(upsample) -> int:
  if upsample not in (1, 2):
    raise ValueError(f'upsample must be 1 (the _28 models) or 2 (the _56 models); '
                     f'got {upsample!r}.')
  return upsample


def torch_uniform(fan_in: int):
  """Initializer U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for
  conv and linear weights (kaiming_uniform with a = sqrt(5)) and biases."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def he_normal(fan_in: int):
  """Initializer N(0, 2 / fan_in) (the reference's DSS 'he' init)."""
  std = math.sqrt(2.0 / fan_in)

  def init(key, shape, dtype=jnp.float32):
    return std * jax.random.normal(key, shape, dtype)
  return init


def pool_geometry(upsample_factor: int) -> list[tuple[int, int]]:
  """(window, padding) of the three blocks' max pools: 28 -> 14 -> 7 -> 2 (56 -> ... -> 2)."""
  return [(2, 0), (2, 0), (4 * upsample_factor, 2)]


class Conv(nnx.Module):
  """A plain conv (HWIO kernel, PyTorch init) through `scalenet.conv.conv2d`."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               padding: int, use_bias: bool = True, rngs: nnx.Rngs):
    fan_in = in_features * kernel_size**2
    self.padding = padding
    self.kernel = nnx.Param(torch_uniform(fan_in)(
        rngs.params(), (kernel_size, kernel_size, in_features, out_features)))
    self.bias = (nnx.Param(torch_uniform(fan_in)(rngs.params(), (out_features,)))
                 if use_bias else None)

  def __call__(self, x):
    y = conv.conv2d(x, self.kernel[...], padding=self.padding)
    return y if self.bias is None else y + self.bias[...]


class Stage(nnx.Module):
  """What follows each conv: relu -> max pool -> BatchNorm (or none).

  `norm` is any module of the pooled map (BatchNorm over channels by default).
  """

  def __init__(self, features: int, *, window: int, padding: int = 0, norm=True,
               rngs: nnx.Rngs):
    self.window, self.padding = window, padding
    if norm is True:
      norm = common.batch_norm(features, rngs=rngs)
    self.norm = norm or None

  def __call__(self, y):
    y = pooling.max_pool(nnx.relu(y), self.window, self.padding)
    return y if self.norm is None else self.norm(y)


class MLPHead(nnx.Module):
  """The published table's head: flatten -> Linear -> BatchNorm1d -> relu -> Dropout -> Linear: [B, 2, 2, C] -> [B, K].

  Flattening is in H, W, C order (PyTorch's is C, H, W: a fixed permutation
  of the first layer's inputs, immaterial for a layer trained from scratch).
  """

  def __init__(self, in_features: int, hidden: int, num_classes: int, *,
               dropout: float = DROPOUT, fc1_bias: bool = False, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(in_features, hidden, use_bias=fc1_bias,
                          kernel_init=torch_uniform(in_features),
                          bias_init=torch_uniform(in_features), rngs=rngs)
    self.bn = common.batch_norm(hidden, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, num_classes, kernel_init=torch_uniform(hidden),
                          bias_init=torch_uniform(hidden), rngs=rngs)

  def __call__(self, x):
    h = nnx.relu(self.bn(self.fc1(x.reshape(x.shape[0], -1))))
    return self.fc2(self.dropout(h))


def run_blocks(convs, stages, x, out: dict, view=lambda y: y):
  """Runs conv/stage pairs, recording view('block{i}.conv') and view('block{i}') in `out`."""
  for i, (c, stage) in enumerate(zip(convs, stages)):
    y = c(x)
    x = stage(y)
    out[f'block{i}.conv'], out[f'block{i}'] = view(y), view(x)
  return x


class ConvStages(common.Representable):
  """Mixin of the table's plain-map models: `self.convs` and `self.stages` on
  the input up-sampled by `self.upsample`, then `self.head`.

  Representations: 'block{i}.conv' (a conv's output [B, H, W, C], before
  relu) and 'block{i}' (its stage's output), then 'logits'.
  """

  def representations(self, x):
    out = {}
    x = run_blocks(self.convs, self.stages, transforms.nearest_upsample(x, self.upsample), out)
    out['logits'] = self.head(x)
    return out

  def scale_actions(self):
    return {**common.block_actions(len(self.convs), reps.SPATIAL), 'logits': reps.INVARIANT}
