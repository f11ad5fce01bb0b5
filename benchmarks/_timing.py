"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import time

import jax
import numpy as np


def time_fn(fn, *args, repeats: int = 20, warmup: int = 2) -> dict:
  """Median/min wall time in ms of a jitted fn, and its compile time in s."""
  jitted = jax.jit(fn)
  t0 = time.perf_counter()
  jax.block_until_ready(jitted(*args))
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    jax.block_until_ready(jitted(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    times.append((time.perf_counter() - t0) * 1e3)
  return {'median_ms': float(np.median(times)), 'min_ms': float(np.min(times)),
          'compile_s': compile_s}


def fwd_bwd(f):
  """A function whose cost is the forward and backward pass of f."""
  def loss(*args):
    return jax.numpy.sum(f(*args) ** 2)
  return jax.grad(loss, argnums=tuple(range(2)))


def environment() -> str:
  dev = jax.devices()[0]
  return f'jax {jax.__version__}, backend {jax.default_backend()}, {dev.device_kind}, {len(jax.devices())} device(s)'
