import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalenet import equivariance_curve, equivariance_error, gaussian_lift
from scalenet import representations, transforms


def _smooth_images():
  c = 15.5
  yy, xx = np.mgrid[:32, :32]
  g1 = np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / 18.0)
  g2 = np.exp(-((yy - c - 3) ** 2 + (xx - c + 2) ** 2) / 30.0)
  return jnp.asarray(np.stack([g1, g2])[..., None], jnp.float32)


@pytest.mark.parametrize('factor', [0.5, 0.8, 1.25])
def test_identity_is_exactly_equivariant(factor):
  assert float(equivariance_error(lambda x: x, _smooth_images(), factor)) == 0.0


def test_pointwise_fn_is_nearly_equivariant():
  err = float(equivariance_error(jnp.tanh, _smooth_images(), 0.7))
  assert err < 1e-3, err


def test_negative_control_fixed_conv_is_not_equivariant():
  k = jax.random.normal(jax.random.key(0), (7, 7, 1, 4))
  conv = lambda x: jax.lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  err = float(equivariance_error(conv, _smooth_images(), 0.5))
  assert err > 0.1, err


def test_invariance_for_vector_outputs():
  x = _smooth_images()
  total = lambda x: x.sum(axis=(1, 2))  # not scale invariant: mass scales by s^2
  mean_max = lambda x: x.max(axis=(1, 2))  # nearly invariant for smooth blobs
  assert float(equivariance_error(total, x, 0.5)) > 0.3
  assert float(equivariance_error(mean_max, x, 0.8)) < 1e-2


def test_scale_space_transform_shifts_levels():
  """gaussian_lift(L_2 f)[k] ~ L_2 gaussian_lift(f)[k-1]: a shift of one level."""
  x = _smooth_images()
  lift = lambda x: gaussian_lift(x, num_scales=3, base=2.0, zero_scale=1.0)
  shifted = float(equivariance_error(lift, x, 2.0,
                                     out_transform=representations.scale_space_transform(2.0)))

  def unshifted(a, y, s):  # rescale each level, compare level k with level k
    defined = transforms.rescale(jnp.ones_like(y[:1]), s) > 0.5
    return jnp.where(defined, a, 0), jnp.where(defined, transforms.rescale(y, s), 0)
  unshifted = float(equivariance_error(lift, x, 2.0, out_transform=unshifted))
  assert shifted < 0.02, shifted
  assert unshifted > 5 * shifted, (shifted, unshifted)


def test_curve_and_errors():
  x = _smooth_images()
  curve = equivariance_curve(lambda x: x, x, [0.5, 1.0, 2.0])
  assert curve.shape == (3,) and np.all(curve == 0)
  with pytest.raises(ValueError, match='factor'):
    equivariance_error(lambda x: x, x, 0.0)
  with pytest.raises(ValueError, match='out_transform'):
    equivariance_error(lambda x: x[:, None], x, 0.5)


def _digits(n=32):
  from scalenet.data import readers
  return jnp.asarray(readers.read_mnist_5k()[0][:n], jnp.float32) / 255.0


def _numpy_masked_delta(fn, x, factor, reduction):
  """Delta from the definition, in numpy: the comparison region is where the
  output pixel's source (p + 1/2 - (1 - s) n / 2) / s - 1/2 lies in [-1/2, n - 1/2]."""
  a = np.asarray(fn(transforms.rescale(x, factor)), np.float64)
  b = np.asarray(transforms.rescale(fn(x), factor), np.float64)
  n = b.shape[1]
  src = (np.arange(n) + 0.5 - (1 - factor) * n / 2) / factor - 0.5
  inside = (src >= -0.5) & (src <= n - 0.5)
  mask = np.outer(inside, inside)[None, :, :, None]
  num = np.sum(((a - b) * mask) ** 2, axis=(1, 2, 3))
  den = np.sum((b * mask) ** 2, axis=(1, 2, 3))
  return np.mean(num / den) if reduction == 'mean' else num.sum() / den.sum()


@pytest.mark.parametrize('reduction', ['mean', 'pooled'])
@pytest.mark.parametrize('factor', [0.6, 1.7])
def test_error_matches_numpy_definition(reduction, factor):
  x = jnp.concatenate([_smooth_images(), 0.3 * _smooth_images()[::-1]], axis=0)
  fn = lambda v: jnp.tanh(3 * v + 0.2) ** 2  # nonzero on the background
  want = _numpy_masked_delta(fn, x, factor, reduction)
  got = float(equivariance_error(fn, x, factor, reduction=reduction))
  np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize('factor', [0.5, 2 ** (-1 / 3), 2.0])
def test_positive_control_affine_map_on_mnist_digits(factor):
  """x -> 2 x + 0.5 commutes with L_s wherever L_s is defined: Delta ~ 0."""
  err = float(equivariance_error(lambda v: 2 * v + 0.5, _digits(), factor))
  assert err < 1e-4, err


def test_comparing_against_the_zero_fill_is_the_artefact_we_avoid():
  """Control of the control: the same affine map scored against a zero-filled
  L'_s fn(x) (no restriction to where it is defined) gets a large Delta."""
  x = _digits()
  zero_fill = lambda lhs, y, s: (lhs, transforms.rescale(y, s))
  err = float(equivariance_error(lambda v: 2 * v + 0.5, x, 0.5, out_transform=zero_fill))
  assert err > 0.5, err


def test_negative_control_random_5x5_conv_on_mnist_digits():
  k = jax.random.normal(jax.random.key(0), (5, 5, 1, 8))
  conv = lambda v: jax.lax.conv_general_dilated(
      v, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  err = float(equivariance_error(conv, _digits(), 0.5))
  assert err > 0.05, err


def test_a_dead_image_blows_up_the_mean_but_not_the_pooled_error():
  # Image 1's reference output is all but zero while its other side is not.
  def out_transform(lhs, y, factor):
    ref = transforms.rescale(y, factor).at[1].set(1e-12)
    return lhs.at[1].set(1e-3), ref
  err = lambda r: float(equivariance_error(lambda v: v, _smooth_images(), 0.5,
                                           out_transform=out_transform, reduction=r))
  ref0 = np.asarray(transforms.rescale(_smooth_images(), 0.5))[0]
  np.testing.assert_allclose(err('pooled'), 1e-6 * ref0.size / np.sum(ref0 ** 2), rtol=1e-4)
  assert err('mean') > 1e10
  with pytest.raises(ValueError, match='reduction'):
    err('median')


def test_an_all_zero_reference_gives_nan_not_a_huge_number():
  def out_transform(lhs, y, factor):
    return lhs, jnp.zeros_like(lhs)  # e.g. a 2x2 map rescaled by 1/3
  with jax.debug_nans(False):  # the NaN is the answer here
    for r in ('mean', 'pooled'):
      assert np.isnan(float(equivariance_error(lambda v: v, _smooth_images(), 0.5,
                                               out_transform=out_transform, reduction=r)))


# --- Layer-wise Delta for training and for repeated calls. ---

def _tiny_dss():
  from flax import nnx
  from scalenet import models
  return models.get_model('dss_v1', rngs=nnx.Rngs(0), channels=(4, 8), num_scales=3)


def test_layerwise_deltas_are_arrays_equal_to_the_measurement_and_differentiable():
  from flax import nnx
  from scalenet import equivariance, representations
  model = _tiny_dss()
  x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  model.eval()
  arrays = equivariance.layerwise_deltas(model, x, 0.5)
  floats = equivariance.layerwise_equivariance(model, x, 0.5)
  assert list(arrays) == list(floats)
  for name in floats:
    assert isinstance(arrays[name], jax.Array) and arrays[name].shape == ()
    np.testing.assert_allclose(float(arrays[name]), floats[name], rtol=1e-4, atol=1e-7)
  # A penalty in a training loss: jitted, differentiated in train mode.
  model.train()
  penalty = lambda m: sum(equivariance.layerwise_deltas(m, x, 0.5).values())
  grads = nnx.jit(nnx.grad(penalty))(model)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert max(float(jnp.abs(g).max()) for g in leaves) > 0
  with pytest.raises(representations.FactorError):
    equivariance.layerwise_deltas(model, x, 0.7)


def test_repeated_layerwise_calls_on_one_model_compile_once():
  from scalenet import equivariance
  model = _tiny_dss()
  x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  equivariance.layerwise_equivariance(model, x, 0.5)
  compiled = equivariance._eval_representations._cache_size()
  equivariance.layerwise_equivariance(model, x, 0.5)
  equivariance.layerwise_equivariance(model, x, 2.0)
  assert equivariance._eval_representations._cache_size() == compiled


def test_a_short_last_chunk_is_padded_not_recompiled_and_measures_the_same():
  from scalenet import equivariance
  model = _tiny_dss()
  x = jax.random.uniform(jax.random.key(1), (5, 28, 28, 1))
  whole, _ = equivariance.layerwise_terms(model, x, 0.5)
  before = equivariance._eval_representations._cache_size()
  chunked, _ = equivariance.layerwise_terms(model, x, 0.5, batch_size=2)  # 2 + 2 + 1 (padded)
  assert equivariance._eval_representations._cache_size() == before + 1  # only [2, ...]
  for name, (num, den) in whole.items():
    assert chunked[name][0].shape == (5,)
    np.testing.assert_allclose(chunked[name][0], num, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(chunked[name][1], den, rtol=2e-4, atol=1e-6)
