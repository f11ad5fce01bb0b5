"""Fourier scale-equivariant network for scale-MNIST (Rahman & Yeh, NeurIPS 2023).

The reference's `FourierSeqMist` (scale_eq/models/fourier_seq_mnist.py) with
train_mnist.py's widths: four blocks of a localized spectral conv plus a
complex 1x1 conv, each followed by the scale-equivariant ReLU with a
per-resolution instance norm (`fourier.scale_eq_nonlin`, base 6, every
resolution up to 28); then the band-limited stack (resolutions 8 to the
input's size, each on a 28 x 28 grid, 14 x 14 max pool) and one head shared
by every entry. The logits are the head's output for the last entry (the
input's own resolution), as the reference predicts. Any square input from
8 x 8 to 28 x 28 is taken.

Representations: 'block{i}.conv' (conv outputs) and 'block{i}' (after the
nonlinearity), maps [B, N, N, C] at the input's resolution, then 'logits'.
Under the resolution action (`transforms.Resolution`) every block is exactly
equivariant (tests/test_fourier.py).

What differs from the reference, on purpose:
- Features are real maps between blocks. The reference carries complex
  spectra and its nonlinearity takes the real part of their inverse first,
  so only the real part of a block's output ever matters: the same numbers.
  The imaginary 1x1 weights (conv_i) reach only the discarded imaginary part
  (no gradient, as in the reference); they are kept so that the parameters
  and their count are the reference's.
- D_n drops the Nyquist frequency of even grids (the reference's
  `skip_nyq=True`; its `resample` keeps half of it), which makes every block
  exactly equivariant, not up to the Nyquist terms.
- The readout low-passes the features' spectrum. The reference's `get_stack`
  applies `irfft2` to the real features where their spectrum is meant, which
  breaks the invariance the stack exists for; we compute what it describes.
- Training uses the cross-entropy of the logits (train.py's loss) by
  default; config.loss='stack' (configs/sesn_table.py's 'multires', with
  their multi-resolution batches) trains with the reference's sum over every
  stack entry plus its monotonicity penalty (`train.stack_loss`), without
  its spectral-decay regulariser and per-resolution weight decay.

References:
  Rahman & Yeh, "Truly Scale-Equivariant Deep Nets with Fourier Layers",
  NeurIPS 2023.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from scalenet import fourier, representations as reps
from scalenet.models import common, harness


class FourierConv(nnx.Module):
  """Localized spectral conv plus a complex 1x1 conv: [B, N, N, Cin] -> [B, N, N, Cout].

  y = Re ifft2(W(f) fft2(x)) + Re(x (Wr + i Wi)) with W = `localized_filter`
  of `coefficients` [Cin, Cout, k, k] (complex, init N(0, 1/Cin) as the
  reference) on `global_modes` frequencies; Wr, Wi [Cin, Cout] PyTorch's
  1x1-conv init. Re(x Wi) = 0 for real x: Wi is kept for the reference's
  parameter count.
  """

  def __init__(self, in_features: int, out_features: int, *, global_modes: int = 28,
               local_modes: int = 5, rngs: nnx.Rngs):
    self.global_modes = global_modes
    std = math.sqrt(1.0 / in_features)
    self.coefficients = nnx.Param(std * jax.random.normal(
        rngs.params(), (in_features, out_features, local_modes, local_modes), jnp.complex64))
    init = harness.torch_uniform(in_features)
    self.pointwise_real = nnx.Param(init(rngs.params(), (in_features, out_features)))
    self.pointwise_imag = nnx.Param(init(rngs.params(), (in_features, out_features)))

  def filter(self) -> jax.Array:
    """[Cin, Cout, G, G] complex: the filter at every frequency modulo G."""
    return fourier.localized_filter(self.coefficients[...], self.global_modes)

  def __call__(self, x):
    return fourier.spectral_conv(x, self.filter()) + x @ self.pointwise_real[...]


class ScaleEqReLU(nnx.Module):
  """`fourier.scale_eq_nonlin` with ReLU and an instance norm per resolution.

  The norm at resolution r normalises each map over its r x r pixels (eps
  1e-5, no running statistics, as PyTorch's InstanceNorm2d) with its own
  affine scale and bias per channel, for every r of base, base + increment,
  ..., max_res.
  """

  def __init__(self, features: int, *, base: int = 6, max_res: int = 28, increment: int = 1,
               rngs: nnx.Rngs):
    del rngs  # deterministic init: scale 1, bias 0
    if base % 2:
      raise ValueError(f'base resolution must be even (the reference asserts it); got {base}.')
    self.base, self.max_res, self.increment = base, max_res, increment
    self.resolutions = tuple(range(base, max_res + 1, increment))
    self.scale = nnx.Param(jnp.ones((len(self.resolutions), features)))
    self.bias = nnx.Param(jnp.zeros((len(self.resolutions), features)))

  def _norm(self, r, z):
    if r not in self.resolutions:
      raise ValueError(f'resolution {r} has no instance norm (the layer has '
                       f'{self.resolutions[0]}..{self.resolutions[-1]} step {self.increment}): '
                       f'inputs may be at most {self.max_res} x {self.max_res}.')
    i = self.resolutions.index(r)
    mean = jnp.mean(z, axis=(1, 2), keepdims=True)
    var = jnp.var(z, axis=(1, 2), keepdims=True)
    return (z - mean) * jax.lax.rsqrt(var + 1e-5) * self.scale[i] + self.bias[i]

  def __call__(self, x):
    return fourier.scale_eq_nonlin(x, jax.nn.relu, base=self.base, increment=self.increment,
                                   norm=self._norm)


class FourierSEMNIST(common.Representable):
  """The reference's Fourier scale-equivariant MNIST network (see the module docstring).

  Args:
    num_classes: logits size.
    channels: widths of the four blocks (train_mnist.py: 32, 64, 100, 100).
    hidden: width of the head's hidden layer (FC1: 256).
    dropout: the head's two dropout rates (dropout_fc1, dropout_fc2).
    global_modes, local_modes: the spectral filters' G and k (28, 5).
    nonlin_base: lowest resolution of the nonlinearities (6).
    max_res: highest resolution (28); the largest input.
    read_base: lowest resolution of the readout stack (8); the smallest input.
    pool: max-pool window of the readout (14): 2 x 2 cells on 28 x 28.
    in_channels: image channels.
  """

  def __init__(self, num_classes: int = 10, *, channels=(32, 64, 100, 100), hidden: int = 256,
               dropout=(0.0, 0.75), global_modes: int = 28, local_modes: int = 5,
               nonlin_base: int = 6, max_res: int = 28, read_base: int = 8, pool: int = 14,
               in_channels: int = 1, rngs: nnx.Rngs):
    channels = tuple(int(c) for c in channels)
    if not channels or min(channels) < 1:
      raise ValueError(f'channels must be positive widths; got {channels!r}.')
    if not nonlin_base <= read_base <= max_res:
      raise ValueError(f'need nonlin_base <= read_base <= max_res; got {nonlin_base}, '
                       f'{read_base}, {max_res}.')
    self.max_res, self.read_base, self.pool = max_res, read_base, pool
    widths = (in_channels, *channels)
    self.convs = nnx.List([FourierConv(widths[i], widths[i + 1], global_modes=global_modes,
                                       local_modes=local_modes, rngs=rngs)
                           for i in range(len(channels))])
    self.nonlins = nnx.List([ScaleEqReLU(c, base=nonlin_base, max_res=max_res, rngs=rngs)
                             for c in channels])
    cells = math.ceil(max_res / pool) ** 2
    features = channels[-1] * cells
    self.norm_in = nnx.LayerNorm(features, epsilon=1e-5, rngs=rngs)
    self.dropout_in = nnx.Dropout(dropout[0], rngs=rngs)
    self.fc1 = nnx.Linear(features, hidden, kernel_init=harness.torch_uniform(features),
                          bias_init=harness.torch_uniform(features), rngs=rngs)
    self.dropout_hidden = nnx.Dropout(dropout[1], rngs=rngs)
    self.norm_hidden = nnx.LayerNorm(hidden, epsilon=1e-5, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, num_classes, kernel_init=harness.torch_uniform(hidden),
                          bias_init=harness.torch_uniform(hidden), rngs=rngs)

  def _check_input(self, x):
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
      raise ValueError(f'fourier_se_mnist takes square images [B, N, N, C]; got {x.shape}.')
    if not self.read_base <= x.shape[1] <= self.max_res:
      raise ValueError(f'fourier_se_mnist takes {self.read_base} x {self.read_base} to '
                       f'{self.max_res} x {self.max_res} inputs; got {x.shape[1]} x {x.shape[2]}.')

  def head(self, features):
    """[..., P, P, C] -> [..., K], shared by every entry of the stack."""
    h = features.reshape(*features.shape[:-3], -1)
    h = self.fc1(self.dropout_in(self.norm_in(h)))
    h = nnx.relu(self.norm_hidden(self.dropout_hidden(h)))
    return self.fc2(h)

  def _blocks(self, x, out: dict):
    self._check_input(x)
    for i, (conv, nonlin) in enumerate(zip(self.convs, self.nonlins)):
      out[f'block{i}.conv'] = x = conv(x)
      out[f'block{i}'] = x = nonlin(x)
    return x

  def stack_logits(self, x):
    """[B, R, K]: the head on every entry of the stack (resolutions read_base..N)."""
    x = self._blocks(x, {})
    return self.head(fourier.band_limited_stack(x, base=self.read_base, keep=self.max_res,
                                                pool=self.pool))

  def representations(self, x):
    out = {}
    x = self._blocks(x, out)
    last = fourier.band_limited_stack(x, base=x.shape[1], keep=self.max_res, pool=self.pool)
    out['logits'] = self.head(last[:, -1])
    return out

  def scale_actions(self):
    return {**{f'block{i}{part}': reps.SPATIAL for i in range(len(self.convs))
               for part in ('.conv', '')}, 'logits': reps.INVARIANT}


fourier_se_mnist = common.register(FourierSEMNIST, 'fourier_se_mnist')
MODELS = {'fourier_se_mnist': fourier_se_mnist}  # This family's registry entry.
