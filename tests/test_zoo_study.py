"""The study's models in the published table's harness: mnist_dcn_28, mnist_dss_v2_28, mnist_deform_dss_28."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import sesn_table
from scalenet import config as config_lib, equivariance, models
from scalenet.data import readers
from tests.train_steps import adam_losses

CNN_28 = 494_549  # The table's budget: mnist_cnn_28's count.
PINNED_PARAMS = {'mnist_dcn_28': 490_326, 'mnist_dss_v2_28': 494_359,
                 'mnist_deform_dss_28': 491_134}
NAMES = sorted(PINNED_PARAMS)
TINY = dict(channels=(4, 8, 8), hidden=16)


@pytest.fixture(scope='module')
def digits():
  images, labels = readers.read_mnist_5k()
  return jnp.asarray(images[:16], jnp.float32) / 255.0, jnp.asarray(labels[:16])


@pytest.mark.parametrize('name', NAMES)
def test_count_is_pinned_and_within_two_percent_of_the_table(name):
  model = nnx.eval_shape(lambda: models.get_model(name, rngs=nnx.Rngs(0)))
  n = models.count_params(model)
  assert n == PINNED_PARAMS[name]
  assert abs(n - CNN_28) <= 0.02 * CNN_28
  out = nnx.eval_shape(lambda m, x: m(x), model,
                       jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32))
  assert out.shape == (3, 10)


@pytest.mark.parametrize('name', NAMES)
def test_config_of_the_table_builds_it(name):
  config = sesn_table.get_config(f'{name},tiny')
  config_lib.validate(config)
  assert config.model_name == name


@pytest.mark.parametrize('name', NAMES)
def test_trains_on_mnist_digits_at_reduced_width(name, digits):
  x, y = digits
  losses = adam_losses(models.get_model(name, rngs=nnx.Rngs(0), **TINY), x, y, steps=12)
  assert np.all(np.isfinite(losses)), losses
  assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


@pytest.mark.parametrize('name', NAMES)
def test_eval_mode_matches_train_mode_once_statistics_settle(name, digits):
  # The same batch in train mode until BatchNorm's running averages reach its
  # statistics; eval mode must then give the same last block (before the
  # head's dropout). For DSS v2 this checks that both levels share one set
  # of statistics in both modes.
  model = models.get_model(name, rngs=nnx.Rngs(0), **TINY)
  x = digits[0][:8]
  forward = nnx.jit(lambda m, x: m.representations(x)['block2'])
  model.train()
  for _ in range(200):  # 0.9**200: the initial variance of 1 is gone even for dim channels.
    train_out = forward(model, x)
  model.eval()
  np.testing.assert_allclose(forward(model, x), train_out, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize('name', NAMES)
def test_layerwise_delta_covers_every_representation(name, digits):
  model = models.get_model(name, rngs=nnx.Rngs(0), **TINY)
  deltas = equivariance.layerwise_equivariance(model, digits[0][:4], 0.5)
  assert list(deltas) == list(model.scale_actions())
  assert all(np.isfinite(v) for v in deltas.values()), deltas


def _copy(dst, src):
  nnx.update(dst, nnx.state(src, nnx.Param))


def test_dcn_at_init_is_the_cnn_with_the_same_weights(digits):
  # Zero-initialised offset branches: the deformable blocks sample the
  # regular grid, so the model is mnist_cnn_28 until training moves them.
  dcn = models.get_model('mnist_dcn_28', rngs=nnx.Rngs(1), **TINY)
  cnn = models.get_model('mnist_cnn_28', rngs=nnx.Rngs(0), **TINY)
  for c, d in zip(cnn.convs, dcn.convs):
    c.kernel[...], c.bias[...] = d.kernel[...], d.bias[...]
  _copy(cnn.stages, dcn.stages), _copy(cnn.head, dcn.head)
  cnn.eval(), dcn.eval()
  x = digits[0][:4]
  np.testing.assert_allclose(dcn(x), cnn(x), rtol=1e-5, atol=1e-5)
  # Negative control: moving one offset branch changes the output.
  dcn.convs[2].offset.bias[...] = jnp.full_like(dcn.convs[2].offset.bias[...], 5.0)
  assert float(jnp.abs(dcn(x) - cnn(x)).max()) > 1e-3


def test_deform_dss_at_init_is_dss_vector_with_the_same_weights(digits):
  ddss = models.get_model('mnist_deform_dss_28', rngs=nnx.Rngs(1), **TINY)
  dss = models.get_model('mnist_dss_vector_28', rngs=nnx.Rngs(0), **TINY)
  for c, d in zip(dss.convs, ddss.convs):
    c.kernel[...] = d.kernel[...]
  _copy(dss.stages, ddss.stages), _copy(dss.head, ddss.head)
  dss.eval(), ddss.eval()
  x = digits[0][:4]
  np.testing.assert_allclose(ddss(x), dss(x), rtol=1e-5, atol=1e-5)
  ddss.convs[1].offset_bias[...] = jnp.full_like(ddss.convs[1].offset_bias[...], 5.0)
  assert float(jnp.abs(ddss(x) - dss(x)).max()) > 1e-3


def test_dss_v2_level_zero_is_a_plain_conv_of_the_input(digits):
  # Level 0 of the bilinear pyramid is the input itself, convolved by the
  # shared kernel: 'block0.conv'[:, 0] is lax's conv of x.
  model = models.get_model('mnist_dss_v2_28', rngs=nnx.Rngs(0), **TINY)
  x = digits[0][:2]
  want = jax.lax.conv_general_dilated(x, model.kernels[0][...], (1, 1), [(3, 3), (3, 3)],
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  got = model.representations(x)['block0.conv'][:, 0]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match='deformable'):
    models.get_model('mnist_dcn_28', rngs=nnx.Rngs(0), deformable=4)
  with pytest.raises(ValueError, match='channels'):
    models.get_model('mnist_deform_dss_28', rngs=nnx.Rngs(0), channels=(4, 8))
