import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from scalenet import bilinear_lift, gaussian_lift, match_sizes, scale_space


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_gaussian_lift_shape_dtype_and_jit(dtype):
  x = jax.random.uniform(jax.random.key(0), (2, 20, 24, 3)).astype(dtype)
  y = gaussian_lift(x, num_scales=3)
  chex.assert_shape(y, (2, 3, 20, 24, 3))
  assert y.dtype == dtype
  yj = jax.jit(lambda x: gaussian_lift(x, num_scales=3))(x)
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(yj, np.float32),
                             atol=1e-2 if dtype == jnp.bfloat16 else 1e-6)


def test_level_zero_is_input():
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 2))
  np.testing.assert_array_equal(gaussian_lift(x, num_scales=3)[:, 0], x)


@pytest.mark.parametrize('base,zero_scale', [(2.0, 0.5), (1.5, 1.0)])
def test_lifted_delta_has_variance_t_k_and_unit_mass(base, zero_scale):
  size = 81
  x = jnp.zeros((1, size, size, 1)).at[0, size // 2, size // 2, 0].set(1.0)
  y = np.asarray(gaussian_lift(x, num_scales=4, base=base, zero_scale=zero_scale),
                 np.float64)[0, ..., 0]
  coords = np.arange(size) - size // 2
  expected = zero_scale**2 * (base ** (2 * np.arange(4)) - 1)
  for k in range(4):
    mass = y[k].sum()
    np.testing.assert_allclose(mass, 1.0, atol=1e-5)
    var_y = (y[k].sum(axis=1) * coords**2).sum() / mass
    var_x = (y[k].sum(axis=0) * coords**2).sum() / mass
    np.testing.assert_allclose([var_y, var_x], expected[k], rtol=2e-3, atol=1e-4)


def test_discrete_gaussian_truncation_and_semigroup():
  for t in (0.3, 2.0, 15.75):
    k = scale_space.discrete_gaussian_kernel(t)
    r = len(k) // 2
    n = np.arange(-200, 201)
    full = scipy.special.ive(n, t)
    tail = full[np.abs(n) > r].sum()
    assert tail < 1e-4, (t, tail)
    # Sanity against the untruncated kernel, independently evaluated.
    np.testing.assert_allclose(k, full[np.abs(n) <= r] / full[np.abs(n) <= r].sum())
  # Semi-group: T(t1) * T(t2) = T(t1 + t2), the defining property.
  a, b = scale_space.discrete_gaussian_kernel(1.0), scale_space.discrete_gaussian_kernel(3.0)
  ab = np.convolve(a, b)
  c = scale_space.discrete_gaussian_kernel(4.0)
  pad = (len(ab) - len(c)) // 2
  np.testing.assert_allclose(ab[pad:pad + len(c)], c, atol=2e-5)


def test_bilinear_lift_matches_average_pooling_at_base_2():
  x = jax.random.normal(jax.random.key(2), (2, 16, 12, 3))
  levels = bilinear_lift(x, num_scales=3, base=2.0)
  assert [lv.shape for lv in levels] == [(2, 16, 12, 3), (2, 8, 6, 3), (2, 4, 3, 3)]
  np.testing.assert_array_equal(levels[0], x)
  # Half-pixel-centred 2x bilinear down-sampling averages 2x2 blocks.
  xn = np.asarray(x)
  pooled = xn.reshape(2, 8, 2, 6, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(levels[1], pooled, atol=1e-5)


def test_match_sizes_max_pools_to_smallest():
  x = jax.random.normal(jax.random.key(3), (2, 28, 28, 2))
  levels = bilinear_lift(x, num_scales=4)
  out = match_sizes(levels)
  chex.assert_shape(out, (2, 4, 3, 3, 2))
  # PyTorch adaptive max pool bins: [floor(i n / m), ceil((i + 1) n / m)).
  lv = np.asarray(levels[1])
  n, m = 14, 3
  for i in range(m):
    for j in range(m):
      ys = slice(i * n // m, -(-(i + 1) * n // m))
      xs = slice(j * n // m, -(-(j + 1) * n // m))
      np.testing.assert_allclose(out[:, 1, i, j], lv[:, ys, xs].max(axis=(1, 2)))
  np.testing.assert_allclose(out[:, 3], levels[3])


def test_lift_bad_input():
  with pytest.raises(ValueError, match='rank 4'):
    gaussian_lift(jnp.zeros((28, 28, 1)), num_scales=2)
  with pytest.raises(TypeError, match='floating'):
    gaussian_lift(jnp.zeros((1, 8, 8, 1), jnp.int32), num_scales=2)
  with pytest.raises(ValueError, match='num_scales'):
    gaussian_lift(jnp.zeros((1, 8, 8, 1)), num_scales=0)
  with pytest.raises(ValueError, match='base'):
    bilinear_lift(jnp.zeros((1, 8, 8, 1)), num_scales=2, base=1.0)


def test_gaussian_lift_is_the_separable_zero_padded_convolution():
  # Independent reference: numpy's full 1-D convolution, centre cropped
  # along rows, then columns, with the level kernels (symmetric).
  x = np.asarray(jax.random.normal(jax.random.key(3), (2, 11, 9, 3)), np.float64)
  y = np.asarray(gaussian_lift(jnp.asarray(x, jnp.float32), num_scales=3, base=2.0,
                               zero_scale=0.7))
  variances = scale_space.level_variances(3, 2.0, 0.7)
  for s, t in enumerate(variances):
    k = scale_space.discrete_gaussian_kernel(float(t))
    same = lambda v: np.convolve(v, k, mode='full')[len(k) // 2:len(k) // 2 + len(v)]
    ref = np.apply_along_axis(same, 1, x)
    ref = np.apply_along_axis(same, 2, ref)
    np.testing.assert_allclose(y[:, s], ref, atol=2e-6, rtol=0)
