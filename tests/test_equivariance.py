import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalenet import equivariance_curve, equivariance_error, gaussian_lift
from scalenet import transforms


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
                                     out_transform=transforms.scale_space_transform(2.0)))
  unshifted = float(equivariance_error(
      lift, x, 2.0, out_transform=lambda a, y, s: (a, transforms.rescale(y, s))))
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


@pytest.mark.parametrize('reduction', ['mean', 'pooled'])
def test_error_matches_numpy_definition_and_chunking_agrees(reduction):
  from scalenet.evaluate import batched_equivariance_error
  x = jnp.concatenate([_smooth_images(), 0.3 * _smooth_images()[::-1]], axis=0)
  fn = lambda v: jnp.tanh(3 * v) ** 2
  # Independent computation in numpy, straight from the definition.
  a = np.asarray(fn(transforms.rescale(x, 0.6)), np.float64)
  b = np.asarray(transforms.rescale(fn(x), 0.6), np.float64)
  num, den = np.sum((a - b) ** 2, axis=(1, 2, 3)), np.sum(b ** 2, axis=(1, 2, 3))
  want = np.mean(num / den) if reduction == 'mean' else num.sum() / den.sum()
  assert not np.isclose(np.mean(num / den), num.sum() / den.sum(), rtol=1e-3)
  got = float(equivariance_error(fn, x, 0.6, reduction=reduction))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(
      batched_equivariance_error(fn, np.asarray(x), 0.6, batch=3, reduction=reduction),
      want, rtol=1e-5)


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
