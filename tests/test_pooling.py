"""pooling.max_pool against lax.reduce_window: values, gradients (ties included), errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalenet import pooling


def _reference(x, window, pads):
  lead = x.ndim - 3
  dims = (1,) * lead + (window, window, 1)
  full = ((0, 0),) * lead + tuple(pads) + ((0, 0),)
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, dims, full)


def _weighted_sum(pool):
  """A loss whose gradient tells every output cell apart."""
  def loss(x):
    y = pool(x)
    return jnp.sum(y * jnp.arange(1, y.size + 1, dtype=y.dtype).reshape(y.shape))
  return loss


CASES = [  # (shape, window, pads)
    ((2, 8, 8, 3), 2, ((0, 0), (0, 0))),
    ((2, 7, 9, 3), 2, ((0, 0), (0, 0))),  # odd sizes: floor mode drops the last row/column
    ((2, 3, 7, 7, 4), 2, ((1, 1), (1, 1))),  # scale levels; PyTorch-style padding
    ((1, 9, 10, 2), 3, ((1, 1), (0, 2))),
    ((1, 16, 17, 2), 8, ((2, 2), (0, 0))),  # large windows: cells on one axis
    ((2, 5, 5, 1), 5, ((0, 0), (0, 0))),  # one cell
]


@pytest.mark.parametrize('shape,window,pads', CASES)
def test_values_and_gradients_match_reduce_window(shape, window, pads):
  x = jax.random.normal(jax.random.key(0), shape)
  got = pooling.max_pool(x, window, pads)
  want = _reference(x, window, pads)
  chex.assert_equal_shape([got, want])
  np.testing.assert_array_equal(got, want)
  g_got = jax.grad(_weighted_sum(lambda v: pooling.max_pool(v, window, pads)))(x)
  g_want = jax.grad(_weighted_sum(lambda v: _reference(v, window, pads)))(x)
  np.testing.assert_array_equal(g_got, g_want)


@pytest.mark.parametrize('shape,window,pads', CASES[:5])
def test_ties_route_the_gradient_to_the_first_pixel_like_reduce_window(shape, window, pads):
  # Integers in {0, 1, 2}: most windows hold ties.
  x = jax.random.randint(jax.random.key(1), shape, 0, 3).astype(jnp.float32)
  g_got = jax.jit(jax.grad(_weighted_sum(lambda v: pooling.max_pool(v, window, pads))))(x)
  g_want = jax.grad(_weighted_sum(lambda v: _reference(v, window, pads)))(x)
  np.testing.assert_array_equal(g_got, g_want)
  # Negative control: a max over reshaped windows splits a tie's gradient
  # evenly, which this comparison must see.
  if pads == ((0, 0), (0, 0)) and shape[-3] % window == 0 and shape[-2] % window == 0:
    def reshaped(v):
      *lead, h, w, c = v.shape
      cells = v.reshape(*lead, h // window, window, w // window, window, c)
      return cells.max(axis=(-4, -2))
    g_split = jax.grad(_weighted_sum(reshaped))(x)
    np.testing.assert_array_equal(reshaped(x), _reference(x, window, pads))
    assert not np.array_equal(g_split, g_want)


def test_model_pools_are_the_reference_pools():
  x = jax.random.normal(jax.random.key(2), (2, 2, 7, 7, 5))
  np.testing.assert_array_equal(pooling.max_pool(x, 2, 'SAME'),
                                _reference(x, 2, ((0, 1), (0, 1))))
  np.testing.assert_array_equal(pooling.max_pool(x, 2), _reference(x, 2, ((0, 0), (0, 0))))
  np.testing.assert_array_equal(pooling.max_pool(x[:, 0], 2, 1),
                                _reference(x[:, 0], 2, ((1, 1), (1, 1))))


@pytest.mark.parametrize('shape,window,pads,match', [
    ((4, 4), 2, ((0, 0), (0, 0)), r'\[\.\.\., H, W, C\]'),
    ((1, 4, 4, 1), 0, ((0, 0), (0, 0)), 'positive integer'),
    ((1, 4, 4, 1), 2, ((-1, 0), (0, 0)), '>= 0'),
    ((1, 2, 8, 1), 3, ((0, 0), (0, 0)), 'smaller than one 3x3 cell'),
])
def test_bad_input_is_named(shape, window, pads, match):
  with pytest.raises(ValueError, match=match):
    pooling.max_pool(jnp.zeros(shape), window, pads)


@pytest.mark.parametrize('axis', [0, 1, 3])
def test_max_over_is_jnp_max_with_the_gradient_on_the_first_maximum(axis):
  # Integers in {0, 1, 2}: ties along the axis in most positions.
  x = jax.random.randint(jax.random.key(4), (3, 4, 2, 5), 0, 3).astype(jnp.float32)
  np.testing.assert_array_equal(pooling.max_over(x, axis), jnp.max(x, axis=axis))
  g = jax.jit(jax.grad(_weighted_sum(lambda v: pooling.max_over(v, axis))))(x)
  # Reference (torch.max(dim)'s backward): the whole cotangent to the first argmax.
  y = jnp.max(x, axis=axis)
  cot = jnp.arange(1, y.size + 1, dtype=y.dtype).reshape(y.shape)
  first = jax.nn.one_hot(jnp.argmax(x, axis=axis), x.shape[axis], axis=axis)
  np.testing.assert_array_equal(g, first * jnp.expand_dims(cot, axis))
  # Negative control: jnp.max splits a tie's gradient, which this must see.
  g_split = jax.grad(_weighted_sum(lambda v: jnp.max(v, axis=axis)))(x)
  assert not np.array_equal(g_split, g)
  # Without ties the two gradients agree.
  xr = jax.random.normal(jax.random.key(5), x.shape)
  np.testing.assert_array_equal(
      jax.grad(_weighted_sum(lambda v: pooling.max_over(v, axis)))(xr),
      jax.grad(_weighted_sum(lambda v: jnp.max(v, axis=axis)))(xr))
