"""Fourier scale-equivariant layers: exact equivariance under ideal resampling
where theory says exact (with negative controls), agreement with numpy's FFT,
and the model's count, shapes and resolution action."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scalenet import assert_equivariant, equivariance, fourier, models, tables, transforms
from scalenet.models import fourier as fourier_models
from tests import reference
from tests.train_steps import adam_losses

TINY = dict(channels=(3, 4), hidden=8, max_res=12, global_modes=12)  # inputs 8..12


def _x(n=28, batch=2, channels=3, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, n, n, channels))


@pytest.mark.parametrize('n', [27, 20, 14, 9, 33])
def test_ideal_resample_matches_numpy_fft(n):
  x = _x()
  y = fourier.ideal_resample(x, n)
  chex.assert_shape(y, (2, n, n, 3))
  np.testing.assert_allclose(y, reference.fft_resample(x, n), atol=2e-5)


def test_ideal_resample_is_a_consistent_family():
  x = _x()
  np.testing.assert_allclose(fourier.ideal_resample(fourier.ideal_resample(x, 20), 14),
                             fourier.ideal_resample(x, 14), atol=1e-5)
  # a constant image stays that constant at every size
  np.testing.assert_allclose(fourier.ideal_resample(jnp.full((1, 28, 28, 1), 0.7), 11), 0.7,
                             atol=1e-6)
  with pytest.raises(ValueError, match='positive integers'):
    fourier.ideal_resample(x, 0)


def test_localized_filter_is_the_dft_of_a_small_kernel():
  """The filter is the G-point DFT of the k x k kernel ifft2(coefficients) at [0, k)^2."""
  keys = jax.random.split(jax.random.key(1), 2)
  coef = jax.random.normal(keys[0], (2, 3, 5, 5)) + 1j * jax.random.normal(keys[1], (2, 3, 5, 5))
  table = fourier.localized_filter(coef, 28)
  kernel = np.fft.ifft2(np.asarray(coef))
  padded = np.zeros((2, 3, 28, 28), complex)
  padded[..., :5, :5] = kernel
  np.testing.assert_allclose(table, np.fft.fft2(padded), atol=1e-5)
  with pytest.raises(ValueError, match='global_modes'):
    fourier.localized_filter(coef, 4)


@pytest.mark.parametrize('h,w', [(28, 28), (27, 27), (9, 14), (14, 9)])
def test_spectral_conv_is_circular_convolution_with_the_kernel(h, w):
  """Re ifft2 of the filtered spectrum (the half-spectrum path is exact for odd,
  even and unequal widths)."""
  keys = jax.random.split(jax.random.key(2), 3)
  coef = jax.random.normal(keys[0], (3, 2, 5, 5)) + 1j * jax.random.normal(keys[1], (3, 2, 5, 5))
  x = jax.random.normal(keys[2], (2, h, w, 3))
  y = fourier.spectral_conv(x, fourier.localized_filter(coef, 28))
  # The filter at the grid's integer frequencies: the 28-point DFT of the 5 x 5 kernel.
  kernel = np.zeros((3, 2, 28, 28), complex)
  kernel[..., :5, :5] = np.fft.ifft2(np.asarray(coef))
  fh, fw = np.fft.fftfreq(h, 1 / h).astype(int) % 28, np.fft.fftfreq(w, 1 / w).astype(int) % 28
  grid = np.fft.fft2(kernel)[:, :, fh[:, None], fw[None, :]]
  want = np.einsum('bhwi,iohw->bhwo', np.fft.fft2(np.asarray(x, np.float64), axes=(1, 2)), grid)
  np.testing.assert_allclose(y, np.fft.ifft2(want, axes=(1, 2)).real, atol=1e-4)


def _resolution_gap(fn, x, n):
  return assert_equivariant(fn, x, n / x.shape[1], rescale_fn=transforms.RESOLUTION,
                            atol=1e-9)


@pytest.mark.parametrize('n', [27, 20, 14, 9])
def test_spectral_conv_exactly_equivariant_to_ideal_resampling(n):
  keys = jax.random.split(jax.random.key(3), 2)
  coef = jax.random.normal(keys[0], (3, 4, 5, 5)) + 1j * jax.random.normal(keys[1], (3, 4, 5, 5))
  table = fourier.localized_filter(coef, 28)
  _resolution_gap(lambda v: fourier.spectral_conv(v, table), _x(), n)


def test_spatial_conv_is_not_equivariant_negative_control():
  """A 5x5 conv on the pixel grid (the kernel fixed in pixels) is not."""
  k = jax.random.normal(jax.random.key(4), (5, 5, 3, 4))
  conv = lambda v: jax.lax.conv_general_dilated(v, k, (1, 1), 'SAME',
                                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  with pytest.raises(AssertionError, match='not equivariant'):
    _resolution_gap(conv, _x(), 14)


@pytest.mark.parametrize('n', [19, 14, 9, 6])
def test_nonlinearity_exactly_equivariant_at_every_rung(n):
  fn = lambda v: fourier.scale_eq_nonlin(v, jax.nn.relu, base=6)
  _resolution_gap(fn, _x(n=20), n)


@pytest.mark.parametrize('n,increment', [(28, 1), (21, 1), (20, 4)])
def test_nonlinearity_matches_its_definition(n, increment):
  """The frequency-domain assembly equals the rung-by-rung definition (numpy FFT),
  with a per-rung norm, so a skipped (empty-ring) rung would show if it were not empty."""
  x = _x(n=n)
  norm = lambda r, z: z * (1 + r / 10) - 0.1 * r
  got = fourier.scale_eq_nonlin(x, jax.nn.relu, base=6, increment=increment, norm=norm)
  want = reference.scale_eq_nonlin(np.asarray(x, np.float64), lambda v: np.maximum(v, 0), 6,
                                   increment, norm)
  np.testing.assert_allclose(got, want, atol=5e-5 * np.abs(want).max())


def test_nonlinearity_negative_controls():
  """Pointwise relu is not equivariant; a ladder with increment 4 is exact at its
  rungs (14 = 6 + 2 * 4) and not between them (12)."""
  with pytest.raises(AssertionError, match='not equivariant'):
    _resolution_gap(jax.nn.relu, _x(), 14)
  coarse = lambda v: fourier.scale_eq_nonlin(v, jax.nn.relu, base=6, increment=4)
  _resolution_gap(coarse, _x(), 14)
  with pytest.raises(AssertionError, match='not equivariant'):
    _resolution_gap(coarse, _x(), 12)


def test_nonlinearity_bad_input():
  with pytest.raises(ValueError, match='smaller than the base'):
    fourier.scale_eq_nonlin(_x(n=5), jax.nn.relu, base=6)
  with pytest.raises(ValueError, match='square'):
    fourier.scale_eq_nonlin(jnp.zeros((1, 8, 9, 1)), jax.nn.relu, base=6)
  with pytest.raises(ValueError, match='increment'):
    fourier.ladder(6, 28, 0)


def test_readout_stack_is_consistent_across_resolutions():
  """Entry r of the stack depends on D_r x only."""
  x = _x()
  full = fourier.band_limited_stack(x, base=8, keep=28, pool=14)
  chex.assert_shape(full, (2, 21, 2, 2, 3))
  low = fourier.band_limited_stack(fourier.ideal_resample(x, 17), base=8, keep=28, pool=14)
  np.testing.assert_allclose(low, full[:, :17 - 8 + 1], atol=1e-5)


def test_model_parameter_count_is_the_references():
  """619,114: sum(p.numel()) of the reference's FourierSeqMist with train_mnist.py's
  widths (C1..C4 = 32, 64, 100, 100, FC1 = 256), complex entries counted once,
  measured with the reference code (the closing note of issue 24)."""
  model = models.get_model('fourier_se_mnist', rngs=nnx.Rngs(0))
  assert models.count_params(model) == 619_114
  assert model.convs[0].coefficients[...].dtype == jnp.complex64


@pytest.fixture(scope='module')
def tiny():
  model = models.get_model('fourier_se_mnist', rngs=nnx.Rngs(0), **TINY)
  model.eval()
  return model


def test_model_blocks_exactly_equivariant_and_stack_consistent(tiny):
  x = jax.random.uniform(jax.random.key(5), (2, 12, 12, 1))
  deltas = equivariance.layerwise_equivariance(tiny, x, 8 / 12, rescale_fn=transforms.RESOLUTION)
  assert list(deltas) == ['block0.conv', 'block0', 'block1.conv', 'block1', 'logits']
  for name, d in deltas.items():
    if name != 'logits':
      assert d < 1e-9, (name, d)
  # The logits at 8 x 8 are the stack's entry for resolution 8 of the full image.
  stack = tiny.stack_logits(x)
  chex.assert_shape(stack, (2, 12 - 8 + 1, 10))
  np.testing.assert_allclose(tiny(fourier.ideal_resample(x, 8)), stack[:, 0], atol=1e-4)


def test_model_input_sizes(tiny):
  chex.assert_shape(tiny(jnp.zeros((1, 9, 9, 1))), (1, 10))
  for bad, match in ((jnp.zeros((1, 7, 7, 1)), '8 x 8 to 12 x 12'),
                     (jnp.zeros((1, 13, 13, 1)), '8 x 8 to 12 x 12'),
                     (jnp.zeros((1, 12, 10, 1)), 'square')):
    with pytest.raises(ValueError, match=match):
      tiny(bad)
  with pytest.raises(ValueError, match='even'):
    fourier_models.ScaleEqReLU(4, base=7, rngs=nnx.Rngs(0))


def test_resolution_action_refuses_models_of_one_input_size():
  model = models.get_model('mnist_cnn_28', rngs=nnx.Rngs(0), channels=(4, 4, 4), hidden=8)
  x = jnp.zeros((1, 28, 28, 1))
  # The reason is the model's own (its head's dense layer), in train mode too.
  for fn in (equivariance.layerwise_equivariance, equivariance.layerwise_deltas):
    with pytest.raises(ValueError, match='does not take 14 x 14 inputs.*dot_general'):
      fn(model, x, 0.5, rescale_fn=transforms.RESOLUTION)
  with pytest.raises(ValueError, match='concrete factor'):
    jax.jit(lambda f: transforms.RESOLUTION(x, f))(0.5)


def test_resolution_action_on_a_cnn_with_global_pooling():
  """cnn takes any size: Delta under the resolution action is defined (finite),
  measured on the maps' own grids."""
  model = models.get_model('cnn', rngs=nnx.Rngs(0), channels=(4, 4))
  model.eval()
  x = jax.random.uniform(jax.random.key(6), (2, 28, 28, 1))
  deltas = equivariance.layerwise_equivariance(model, x, 0.5, rescale_fn=transforms.RESOLUTION)
  assert all(np.isfinite(v) and v > 1e-6 for v in deltas.values()), deltas


def test_model_trains():
  """Complex parameters train with Adam: the loss falls on a fixed batch."""
  model = models.get_model('fourier_se_mnist', rngs=nnx.Rngs(1), dropout=(0.0, 0.0),
                           **{**TINY, 'channels': (4, 8), 'pool': 6})
  x = jax.random.uniform(jax.random.key(7), (8, 10, 10, 1))
  losses = adam_losses(model, x, jnp.arange(8) % 10, steps=25)
  assert losses[-1] < 0.5 * losses[0], losses


def test_evaluate_resolution_results(tiny):
  """Accuracy and scale consistency per grid size, Delta under the resolution
  action; a model of one input size is skipped with the reason."""
  from scalenet import config as config_lib, evaluate
  config = config_lib.default_config()
  config.eval_resolution_sizes, config.eval_batch_size = (8,), 6
  images = np.asarray(jax.random.uniform(jax.random.key(8), (6, 12, 12, 1)))
  labels = np.arange(6) % 10
  res = evaluate.resolution_results(tiny, images, labels, config)
  assert set(res['consistency']) == {'8'} and set(res['accuracy']) == {'8'}
  full = np.argmax(np.asarray(tiny(jnp.asarray(images))), -1)
  low = np.argmax(np.asarray(tiny(fourier.ideal_resample(jnp.asarray(images), 8))), -1)
  assert res['consistency']['8'] == pytest.approx(np.mean(full == low))
  assert res['accuracy']['8'] == pytest.approx(np.mean(low == labels))
  assert res['layerwise'][tables.factor_key(8 / 12)]['block1'] < 1e-9
  other = models.get_model('mnist_cnn_28', rngs=nnx.Rngs(0), channels=(4, 4, 4), hidden=8)
  config.eval_resolution_sizes = (14,)
  skipped = evaluate.resolution_results(other, np.zeros((2, 28, 28, 1), np.float32),
                                        np.zeros(2), config)
  assert 'does not take 14 x 14 inputs' in skipped['not_measured']
  assert 'dot_general' in skipped['not_measured']  # the head's own reason


def test_fourier_report_renders_both_actions_and_trained_runs(tmp_path):
  from scalenet import fourier_report
  cache = {'fourier_se_mnist': {
      'canvas': {'factors': {'0.5000': {'block0.conv': [0.4, 0.5], 'block1': [2.0, 2.2],
                                        'logits': [1.0, 1.0]}},
                 'actions': {'block0.conv': 'spatial', 'block1': 'spatial', 'logits': 'inv'}},
      'resolution': {'factors': {'0.5000': {'block0.conv': [1e-14, 3e-14], 'block1': [1e-12],
                                            'logits': [0.15]}},
                     'actions': {'block0.conv': 'spatial', 'block1': 'spatial', 'logits': 'inv'}}},
      'mnist_cnn_28': {'canvas': {'factors': {}, 'actions': {'block0.conv': 's', 'logits': 'i'}},
                       'resolution': {'not_measured': 'MnistCNN does not take 14 x 14 inputs'}}}
  run = tmp_path / 'fourier_se_mnist' / 'plain' / 'r0' / 'eval'
  run.mkdir(parents=True)
  (run / 'results.json').write_text(json.dumps({
      'model_name': 'fourier_se_mnist', 'test_error': 0.05,
      'equivariance': {'layerwise': {'0.5000': {'block0.conv': 0.4, 'logits': 0.9}}},
      'resolution': {'accuracy': {'14': 0.9}, 'consistency': {'14': 0.8},
                     'mean_consistency': 0.8,
                     'layerwise': {'0.5000': {'block0.conv': 2e-14, 'logits': 0.1}}}}))
  run = tmp_path / 'fourier_se_mnist' / 'multires' / 'r0' / 'eval'
  run.mkdir(parents=True)
  (run / 'results.json').write_text(json.dumps({
      'model_name': 'fourier_se_mnist', 'test_error': 0.07,
      'equivariance': {'layerwise': {}},
      'resolution': {'accuracy': {'8': 0.6, '14': 0.8, '28': 0.95},
                     'consistency': {'8': 0.7, '14': 0.85, '28': 1.0}, 'mean_consistency': 0.85}}))
  # A run of a model measured at one input size only: no sizes, no effect on the means.
  run = tmp_path / 'mnist_cnn_28' / 'plain' / 'r0' / 'eval'
  run.mkdir(parents=True)
  (run / 'results.json').write_text(json.dumps({
      'model_name': 'mnist_cnn_28', 'test_error': 0.02, 'equivariance': {'layerwise': {}},
      'resolution': {'sizes': [14], 'not_measured': 'does not take 14 x 14 inputs'}}))
  text = fourier_report.render(cache, {'seeds': 2, 'num_images': 8, 'canvas': 'c'},
                               [str(tmp_path)], None)
  assert '| fourier_se_mnist | canvas | 0.45 ± 0.071 (block0.conv) | 2.1 ± 0.14 (block1) |' in text
  assert '| fourier_se_mnist | resolution | 2e-14 ± 1.4e-14 (block0.conv) |' in text
  assert '| mnist_cnn_28 | resolution | takes one input size only |' in text
  # The mean over sizes is over those both runs were tested at (14 only here).
  assert 'resolution acc. % (mean over sizes 14) |' in text
  assert '| fourier_se_mnist | plain | 1 | - | 5 | 90 | 90 | 0.8 | 0.4 / 0.9 | 2e-14 / 0.1 |' in text
  # Consistency too, over the common sizes (not the run's own 8, 14, 28 mean).
  assert '| fourier_se_mnist | multires | 1 | - | 7 | 80 | 80 | 0.85 | - / - | - / - |' in text
  assert '| mnist_cnn_28 | plain | 1 | - | 2 | - | - | - |' in text
  assert '| mnist_disco | | 0 | | not trained yet |' in text


def _trained_run(root, model, realization, epochs, test_error, source='a'):
  run = root / model / f'r{realization}'
  (run / 'eval').mkdir(parents=True)
  (run / 'config.json').write_text(json.dumps({'num_epochs': epochs}))
  (run / 'eval' / 'results.json').write_text(json.dumps({
      'model_name': model, 'test_error': test_error, 'data': {'source_identity': source},
      'equivariance': {'layerwise': {'0.5000': {'block0.conv': 0.5, 'logits': 0.1}}}}))
  return run


def test_fourier_report_joins_roots_of_one_protocol_and_splits_epochs(tmp_path):
  from scalenet import fourier_report
  ours, study = tmp_path / 'ours', tmp_path / 'study'
  for k in range(2):
    _trained_run(ours, 'mnist_cnn_28', k, 5, 0.03 + 0.01 * k)
    _trained_run(study, 'mnist_dss_vector_28', k, 5, 0.04)
  _trained_run(ours, 'mnist_cnn_28', 2, 60, 0.02)
  # The same run reached through a second root (a link) counts once.
  os.symlink(ours / 'mnist_cnn_28', study / 'mnist_cnn_28')
  text = '\n'.join(fourier_report.trained_table([str(ours), str(study)]))
  assert '| mnist_cnn_28 | plain | 2 | 5 | 3.5 ± 0.71 |' in text
  assert '| mnist_cnn_28 | plain | 1 | 60 | 2 |' in text  # other epochs: its own row
  assert '| mnist_dss_vector_28 | plain | 2 | 5 | 4 ± 0 |' in text
  assert '| mnist_disco | | 0 | | not trained yet |' in text
  # Negative control: one root alone does not show the other's model.
  alone = '\n'.join(fourier_report.trained_table([str(ours)]))
  assert '| mnist_dss_vector_28 | | 0 | | not trained yet |' in alone
  # A run made on other data is refused, not averaged in.
  _trained_run(study, 'mnist_disco', 0, 5, 0.02, source='b')
  with pytest.raises(ValueError, match='different data protocols'):
    fourier_report.trained_table([str(ours), str(study)])
  with pytest.raises(TypeError, match='sequence of directories'):
    fourier_report.trained_table(str(ours))


def _softmax_ce(logits, labels):
  z = logits - logits.max(-1, keepdims=True)
  return np.mean(np.log(np.exp(z).sum(-1)) - z[np.arange(len(labels)), labels])


def test_stack_loss_is_the_references_get_loss():
  """Sum of the entries' cross-entropies plus 0.001 x every rise (Rahman & Yeh's
  get_loss, written as their loop); the rise term is active here."""
  from scalenet import train
  rng = np.random.default_rng(0)
  stack = rng.normal(size=(6, 4, 10)).astype(np.float32)
  stack[:, 2] *= 3.0  # entry 2 less sure than entry 1: a rise
  labels = rng.integers(0, 10, 6)
  ce = [_softmax_ce(stack[:, j].astype(np.float64), labels) for j in range(4)]
  want, rises = ce[0], 0.0
  for j in range(1, 4):
    want += ce[j]
    rises += max(ce[j] - ce[j - 1], 0.0)
  assert rises > 0
  np.testing.assert_allclose(train.stack_loss(jnp.asarray(stack), jnp.asarray(labels)),
                             want + 0.001 * rises, rtol=1e-5)


def test_step_resolution_depends_on_seed_and_step_only():
  from scalenet import config as config_lib, train
  config = config_lib.default_config()
  assert train.step_resolution(config, 5) is None
  config.train_resolutions = (8, 12, 20, 28)
  drawn = [train.step_resolution(config, s) for s in range(1, 201)]
  assert drawn == [train.step_resolution(config, s) for s in range(1, 201)]  # a resume replays
  assert set(drawn) == {8, 12, 20, 28}
  config.seed = 1
  assert drawn != [train.step_resolution(config, s) for s in range(1, 201)]
  config.loss = 'stak'
  with pytest.raises(ValueError, match='config.loss'):
    config_lib.validate(config)


def test_multires_step_trains_on_resampled_images_with_the_stack_loss():
  """A step at resolution 8 is the step on D_8 of the images, and the 'stack'
  loss is stack_loss of the model's stack_logits (its value checked by hand)."""
  import optax
  from scalenet import train
  model = models.get_model('fourier_se_mnist', rngs=nnx.Rngs(1), dropout=(0.0, 0.0),
                           **{**TINY, 'channels': (3,)})
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  images = jax.random.uniform(jax.random.key(9), (4, 12, 12, 1))
  labels = jnp.arange(4)
  copy = lambda: jax.tree.map(jnp.copy, state)
  new_a, m_a = train.train_step(graphdef, copy(), {'image': images, 'label': labels},
                                0.0, 'none', 8, 'stack')
  small = fourier.ideal_resample(images, 8)
  new_b, m_b = train.train_step(graphdef, copy(), {'image': small, 'label': labels},
                                0.0, 'none', None, 'stack')
  params = lambda st: nnx.state(nnx.merge(graphdef, st)[0], nnx.Param)
  chex.assert_trees_all_close(params(new_a), params(new_b), atol=1e-6)
  want = train.stack_loss(nnx.merge(graphdef, state)[0].stack_logits(small), labels)
  np.testing.assert_allclose(m_a['loss'], want, rtol=1e-5)
  _, m_c = train.train_step(graphdef, copy(), {'image': images, 'label': labels},
                            0.0, 'none', None, 'stack')
  assert abs(float(m_c['loss']) - float(m_a['loss'])) > 1e-4  # 12 x 12 is another input


def test_multires_refuses_models_that_cannot_train_so():
  from configs import sesn_table
  from scalenet import runtime, train
  with pytest.raises(ValueError, match="'multires' trains a prediction stack; mnist_cnn_28"):
    sesn_table.get_config('mnist_cnn_28,multires,tiny')
  config = sesn_table.get_config('mnist_cnn_28,tiny')
  config.loss, config.train_resolutions = 'stack', sesn_table.MULTIRES
  eval_def, state = runtime.create_model(config, 10, runtime.make_mesh())
  with pytest.raises(ValueError, match='stack_logits.*mnist_cnn_28 has none'):
    train.check_training_inputs(config, eval_def, state, (28, 28, 1))
  config.loss = 'logits'
  with pytest.raises(ValueError, match='mnist_cnn_28 does not take 8 x 8 inputs'):
    train.check_training_inputs(config, eval_def, state, (28, 28, 1))
  config = sesn_table.get_config('fourier_se_mnist,multires,tiny')
  assert config.loss == 'stack' and config.train_resolutions == tuple(range(8, 29))
  eval_def, state = runtime.create_model(config, 10, runtime.make_mesh())
  train.check_training_inputs(config, eval_def, state, (28, 28, 1))  # takes every size
