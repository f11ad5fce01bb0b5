"""Test set-up: four host CPU devices, so data-parallel code runs as on a pod.

Single-threaded Eigen (`--xla_cpu_multi_thread_eigen=false`) with simulated
devices: with the shared Eigen pool, an all-reduce between the simulated
devices can wait on a pool thread for a participant that never runs, and
XLA aborts the process after 40 s (`rendezvous.cc: Termination timeout`).
Seen in CI (evaluate.py, 2 devices, 2 loaded cores) and reproduced here.
"""

import os

# Must be set before jax initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4 '
                      '--xla_cpu_multi_thread_eigen=false')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _debug_nans():
  """Any NaN produced inside a test's jax code fails that test at its source."""
  with jax.debug_nans(True):
    yield
