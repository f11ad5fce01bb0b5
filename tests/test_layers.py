import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scalenet import layers
from scalenet.bases import hermite


def _conv_same(x, k):
  """Plain 'SAME' cross-correlation, NHWC x HWIO."""
  return jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('mode', ['lift', 'group', 'max'])
def test_steerable_conv_matches_a_per_scale_per_level_reference(mode):
  basis = hermite.hermite_gaussian_basis(5, (1.0, 1.3, 1.7), 3)  # [F, S, k, k]
  cin, cout, s = 3, 4, basis.shape[1]
  conv = layers.SteerableConv(cin, cout, basis, mode=mode, interaction=2, rngs=nnx.Rngs(0))
  conv.bias[...] = jnp.arange(cout, dtype=jnp.float32) * 0.1
  w = np.asarray(conv.weight[...])  # [I, Cin, Cout, F]
  rng = np.random.default_rng(0)
  shape = (2, s, 9, 9, cin) if mode == 'group' else (2, 9, 9, cin)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  # Kernel of input level offset i at basis scale j, built straight from the basis.
  kern = lambda i, j: jnp.asarray(np.einsum('cof,fyx->yxco', w[i], basis[:, j]))
  if mode == 'group':
    # Output level j = sum over i < 2 with j+i < S of conv(x[:, j+i], kernel_{i, j}).
    want = jnp.stack([sum(_conv_same(x[:, j + i], kern(i, j)) for i in range(2) if j + i < s)
                      for j in range(s)], axis=1)
  else:
    want = jnp.stack([_conv_same(x, kern(0, j)) for j in range(s)], axis=1)
  want = want + conv.bias[...]
  if mode == 'max':
    want = want.max(axis=1)
  np.testing.assert_allclose(conv(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('offset_scale', [1.0, 0.1])
def test_deform_conv_layer_scales_its_offset_branch(offset_scale):
  from scalenet import deform
  layer = layers.DeformConv(3, 4, offset_scale=offset_scale, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(1)
  layer.offset.kernel[...] = jnp.asarray(rng.standard_normal(layer.offset.kernel.shape), jnp.float32)
  x = jnp.asarray(rng.standard_normal((2, 7, 7, 3)), jnp.float32)
  branch = jax.lax.conv_general_dilated(x, layer.offset.kernel[...], (1, 1), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  off = (branch + layer.offset.bias[...]).reshape(2, 7, 7, 9, 2) * offset_scale
  want = deform.deform_conv(x, off, layer.kernel[...], padding=1) + layer.bias[...]
  np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-5)
