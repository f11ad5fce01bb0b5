import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalenet import rescale
from scalenet import transforms
from scalenet.representations import FactorError, level_shift


def _blob(size=32, sigma=3.0, channels=2):
  c = (size - 1) / 2
  yy, xx = np.mgrid[:size, :size]
  g = np.exp(-((yy - c) ** 2 + (xx - c - 1.5) ** 2) / (2 * sigma**2))
  return jnp.asarray(np.stack([g, 0.5 * g ** 2], -1)[None, ..., :channels], jnp.float32)


def test_factor_one_is_identity():
  x = jax.random.normal(jax.random.key(0), (2, 9, 12, 3))
  for method in transforms.METHODS:
    for antialias in (False, True) if method != 'pil_bicubic' else (False,):
      np.testing.assert_allclose(rescale(x, 1.0, method=method, antialias=antialias), x,
                                 atol=1e-5)


@pytest.mark.parametrize('factor', [0.5, 0.77, 1.3, 2.0])
def test_matches_map_coordinates_reference(factor):
  x = jax.random.normal(jax.random.key(1), (1, 13, 10, 1))
  y = rescale(x, factor)
  ys = (13 - 1) / 2 + (np.arange(13) - (13 - 1) / 2) / factor
  xs = (10 - 1) / 2 + (np.arange(10) - (10 - 1) / 2) / factor
  gy, gx = np.meshgrid(ys, xs, indexing='ij')
  ref = jax.scipy.ndimage.map_coordinates(x[0, ..., 0], [gy, gx], order=1, mode='constant')
  # Bilinear without antialias is map_coordinates(order=1) wherever every tap
  # lies inside the image; past the edge L_s renormalises where zero padding
  # would darken, so compare one pixel inside the sampled support.
  inside = lambda c, n: (c >= 0) & (c <= n - 1)
  keep = np.outer(inside(ys, 13), inside(xs, 10))
  y = rescale(x, factor, method='linear', antialias=False)
  np.testing.assert_allclose(np.where(keep, y[0, ..., 0], 0), np.where(keep, ref, 0), atol=1e-5)


@pytest.mark.parametrize('method', ['linear', 'cubic'])
@pytest.mark.parametrize('factor', [0.5, 2 ** (-1 / 3), 2.0])
def test_constant_is_kept_where_defined_and_zero_outside(method, factor):
  """The canvas rule: L_s(c) = c where L_s is defined, 0 outside the shrunk image."""
  n = 28
  y = np.asarray(rescale(jnp.full((1, n, n, 1), 0.7), factor, method=method))[0, :, :, 0]
  # Output pixel p samples the input at (p + 1/2 - (1 - s) n / 2) / s - 1/2.
  src = (np.arange(n) + 0.5 - (1 - factor) * n / 2) / factor - 0.5
  defined = (src >= -0.5) & (src <= n - 0.5)
  np.testing.assert_allclose(y[np.ix_(defined, defined)], 0.7, atol=1e-5)
  assert np.all(y[~defined] == 0) and np.all(y[:, ~defined] == 0)


def test_shrink_then_enlarge_recovers_smooth_image():
  x = _blob(sigma=5.0)
  inner = (slice(None), slice(8, 24), slice(8, 24))
  rel = lambda y: float(jnp.linalg.norm((y - x)[inner]) / jnp.linalg.norm(x[inner]))
  err = rel(rescale(rescale(x, 0.5), 2.0))
  assert err < 0.05, err  # measured 0.031: two bilinear passes blur a little
  # Control: a wrong inverse is far off, so the bound above means something.
  assert rel(rescale(rescale(x, 0.5), 1.5)) > 5 * err


def test_scale_space_input_and_jit_with_traced_factor():
  x = jax.random.normal(jax.random.key(2), (2, 3, 8, 8, 1))
  y = jax.jit(rescale)(x, 0.7)
  chex.assert_shape(y, x.shape)
  np.testing.assert_allclose(y[:, 1], rescale(x[:, 1], 0.7), atol=1e-5)
  g = jax.grad(lambda s: jnp.sum(rescale(_blob(), s)))(0.8)
  assert np.isfinite(g) and g != 0


def test_antialias_shrink_keeps_mass():
  x = _blob(sigma=1.0)
  # Shrinking by s scales the area by s^2; antialiased resampling keeps the
  # sum of intensities at s^2 of the original to within a few percent.
  s = 0.4
  ratio = float(rescale(x, s, antialias=True).sum() / x.sum())
  assert abs(ratio - s**2) < 0.02 * s**2, ratio



def test_antialias_averages_stripes_and_its_absence_aliases():
  stripes = jnp.asarray(np.tile((np.arange(32) % 2)[None, :], (32, 1)), jnp.float32)
  x = stripes[None, :, :, None]
  inner = (0, slice(12, 20), slice(12, 20), 0)
  smooth = float(jnp.std(rescale(x, 0.4, antialias=True)[inner]))
  aliased = float(jnp.std(rescale(x, 0.4, antialias=False)[inner]))
  assert smooth < 0.05, smooth
  assert aliased > 4 * smooth and aliased > 0.1, (smooth, aliased)


def test_rescale_bad_input():
  x = jnp.zeros((1, 8, 8, 1))
  for bad in (0.0, -1.0, float('nan'), float('inf')):
    with pytest.raises(ValueError, match='factor'):
      rescale(x, bad)
  with pytest.raises(ValueError, match='rank'):
    rescale(x[0], 0.5)
  with pytest.raises(ValueError, match='method'):
    rescale(x, 0.5, method='bicubic')
  with pytest.raises(ValueError, match='method'):
    transforms.RescaleSpec('nearest')


def test_level_shift_never_rounds():
  assert level_shift(2.0, 2.0) == 1 and level_shift(0.25, 2.0) == -2
  assert level_shift(0.5, 2 ** (1 / 3)) == -3 and level_shift(2 ** (-1 / 3), 2 ** (1 / 3)) == -1
  with pytest.raises(FactorError, match=r'nearest valid factors are 1 \(r\^0\) and 2 \(r\^1\)'):
    level_shift(1.5, 2.0)
  with pytest.raises(FactorError, match='not an integer power'):
    level_shift(0.5, 1.5)


@pytest.mark.parametrize('factor', [0.3, 0.5, 0.77, 1.3, 2.0])
@pytest.mark.parametrize('size', [28, 18])
def test_pil_bicubic_is_pil_affine_transform(factor, size):
  """'pil_bicubic' against PIL itself (float images, so no 8-bit rounding):
  Image.transform(AFFINE, BICUBIC) about the centre, as torchvision's
  RandomAffine calls it."""
  from PIL import Image
  image = np.random.default_rng(size).uniform(0, 1, (size, size)).astype(np.float32)
  a, c = 1 / factor, size / 2
  pil = np.asarray(Image.fromarray(image, mode='F').transform(
      (size, size), Image.AFFINE, (a, 0, c - a * c, 0, a, c - a * c), resample=Image.BICUBIC))
  ours = rescale(jnp.asarray(image)[None, :, :, None], factor, method='pil_bicubic',
                 antialias=False)[0, :, :, 0]
  np.testing.assert_allclose(ours, pil, atol=1e-5)
  traced = jax.jit(lambda x, f: rescale(x, f, method='pil_bicubic', antialias=False))
  np.testing.assert_allclose(traced(jnp.asarray(image)[None, :, :, None], factor)[0, :, :, 0],
                             pil, atol=1e-5)
  # Negative control: Keys' a = -0.5 ('cubic') is another operator.
  keys = rescale(jnp.asarray(image)[None, :, :, None], factor, method='cubic',
                 antialias=False)[0, :, :, 0]
  assert np.abs(keys - pil).max() > 0.05


def test_pil_bicubic_refuses_antialias():
  with pytest.raises(ValueError, match='antialias'):
    transforms.RescaleSpec('pil_bicubic', antialias=True)
  with pytest.raises(ValueError, match='antialias'):
    rescale(jnp.zeros((1, 8, 8, 1)), 0.5, method='pil_bicubic', antialias=True)


@pytest.mark.parametrize('generator', ['default', 'reference', 'reference_pil'])
def test_stored_fixed_scale_split_is_the_on_the_fly_rescale_up_to_uint8(generator):
  """Data generation and accuracy-vs-scale / Delta use one L_s: the stored
  split equals L_s of the unscaled digits, up to rounding to uint8."""
  from scalenet.data import generate, readers
  images, labels = readers.read_mnist_5k()
  images, labels = images[:16], labels[:16]
  stored = generate.fixed_scale_splits(images, labels, generator=generator)
  spec = generate.get_generator(generator).spec
  for factor in generate.FIXED_TEST_FACTORS:
    on_the_fly = np.asarray(spec(jnp.asarray(images, jnp.float32) / 255.0, factor)) * 255.0
    split = stored[generate.fixed_split_name(factor)]['image'].astype(np.float32)
    np.testing.assert_allclose(split, np.clip(on_the_fly, 0, 255), atol=0.5 + 1e-3)
  # Control: the other generator's operator is measurably different.
  other = generate.get_generator('reference' if generator == 'default' else 'default').spec
  far = np.asarray(other(jnp.asarray(images, jnp.float32) / 255.0, 0.5)) * 255.0
  assert np.abs(stored['test_s0500']['image'] - np.clip(far, 0, 255)).max() > 5


def test_a_run_cannot_pair_data_of_one_operator_with_another_l_s():
  from scalenet import config as config_lib
  config = config_lib.default_config()
  config_lib.validate(config)
  config.generator = 'reference'  # cubic, no antialias
  with pytest.raises(ValueError, match='config.rescale'):
    config_lib.validate(config)
  config.rescale.method, config.rescale.antialias = 'cubic', False
  config_lib.validate(config)
