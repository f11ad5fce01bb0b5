"""Test set-up: four host CPU devices, so data-parallel code runs as on a pod."""

import os

# Must be set before jax initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _debug_nans():
  """Any NaN produced inside a test's jax code fails that test at its source."""
  with jax.debug_nans(True):
    yield


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A tfds data_dir where the tests' mnist_5k scale-MNIST is built (once per worker)."""
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='session')
def datasets(data_dir):
  """cnn_mnist:tiny's mnist_5k splits, the training set cut to 320 images (10 steps/epoch at batch 32)."""
  from configs import cnn_mnist
  from scalenet.data import pipeline
  config = cnn_mnist.get_config('tiny')
  config.data_dir = data_dir
  full = pipeline.get_datasets(config, progress=False)
  tr = full.train
  return pipeline.Datasets(pipeline.Split(tr.images[:320], tr.labels[:320], tr.scales[:320]),
                           full.eval, full.num_classes, full.image_shape)
