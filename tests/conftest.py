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
