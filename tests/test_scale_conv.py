import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalenet import assert_equivariant, scale_conv, scale_pool
from scalenet.representations import scale_space
from scalenet.transforms import nearest_upsample
from tests import reference


@pytest.mark.parametrize('base,interaction,stride', [(2, 2, 1), (3, 1, 1), (2, 3, 2)])
def test_scale_conv_matches_numpy_reference(base, interaction, stride):
  x = jax.random.normal(jax.random.key(0), (2, 3, 11, 10, 3))
  k = jax.random.normal(jax.random.key(1), (interaction, 3, 3, 3, 4))
  y = scale_conv(x, k, base=base, stride=stride)
  chex.assert_shape(y, (2, 3, -(-11 // stride), -(-10 // stride), 4))
  ref = reference.scale_conv(np.asarray(x, np.float64), np.asarray(k, np.float64),
                             [base**s for s in range(3)], stride)
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_scale_conv_bfloat16_and_jit():
  x = jax.random.normal(jax.random.key(0), (1, 2, 8, 8, 2))
  k = jax.random.normal(jax.random.key(1), (2, 3, 3, 2, 2))
  y = scale_conv(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16))
  assert y.dtype == jnp.bfloat16
  y32 = jax.jit(scale_conv)(x, k)
  np.testing.assert_allclose(np.asarray(y, np.float32), y32, atol=0.15, rtol=0.05)


def _check(conv, num_scales=4, interaction=2, size=8):
  """assert_equivariant of conv under exact 2x up-sampling with a level shift.

  U = L_2 X: level k+1 is X's level k up-sampled 2x by nearest neighbour, so
  with dilation 2**k every tap of conv(U) lands on a copy of the tap conv(X)
  reads. Output levels k with k + interaction < num_scales see the same
  inputs on both sides; the top of the window differs, so only those levels
  are compared (fn keeps them, plus the one above, which lhs compares).
  """
  x = jax.random.normal(jax.random.key(2), (2, num_scales, size, size, 3))
  k = jax.random.normal(jax.random.key(3), (interaction, 3, 3, 3, 5))
  exact = num_scales - interaction
  up = lambda y, f: nearest_upsample(y, 2)
  return assert_equivariant(lambda z: conv(z, k)[:, :exact + 1], x, 2,
                            in_action=scale_space(2), out_action=scale_space(2),
                            rescale_fn=up, atol=1e-10)


def test_scale_conv_exactly_equivariant_to_2x_upsampling():
  _check(lambda x, k: scale_conv(x, k, base=2))


def test_equivariance_negative_control_fixed_dilation_fails():
  """A conv whose dilation does not grow with the level is not equivariant."""
  def fixed(x, k):
    return jnp.asarray(reference.scale_conv(np.asarray(x), np.asarray(k), [1] * x.shape[1]))
  with pytest.raises(AssertionError, match='not equivariant'):
    _check(fixed)
  # The same reference with growing dilations passes: the control is fair.
  def growing(x, k):
    return jnp.asarray(reference.scale_conv(np.asarray(x), np.asarray(k),
                                            [2**s for s in range(x.shape[1])]))
  _check(growing)


def test_scale_conv_bad_input():
  x, k = jnp.zeros((1, 3, 8, 8, 2)), jnp.zeros((2, 3, 3, 2, 4))
  with pytest.raises(ValueError, match='base'):
    scale_conv(x, k, base=1.2)
  with pytest.raises(ValueError, match='base'):
    scale_conv(x, k, base=0)
  with pytest.raises(ValueError, match='interaction'):
    scale_conv(x, jnp.zeros((4, 3, 3, 2, 4)))
  with pytest.raises(ValueError, match='rank 5'):
    scale_conv(x[:, 0], k)
  with pytest.raises(ValueError, match='Cin'):
    scale_conv(x, jnp.zeros((2, 3, 3, 5, 4)))
  with pytest.raises(ValueError, match='SAME'):
    scale_conv(x, k, padding='VALID')
  with pytest.raises(TypeError, match='floating'):
    scale_conv(x.astype(jnp.int32), k)
  # An integral float base is fine and exact.
  np.testing.assert_array_equal(scale_conv(x, k, base=2.0), scale_conv(x, k, base=2))


def test_scale_pool():
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, 5))
  chex.assert_shape(scale_pool(x), (2, 4, 4, 5))
  np.testing.assert_allclose(scale_pool(x, 'mean'), np.asarray(x).mean(1), rtol=1e-6)
  np.testing.assert_array_equal(scale_pool(x, 'max'), np.asarray(x).max(1))
  with pytest.raises(ValueError, match='mode'):
    scale_pool(x, 'sum')
