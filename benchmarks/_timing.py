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


def time_train_step(model, x, y, repeats: int = 5) -> dict:
  """Median ms of scalenet's jitted training step (Adam) on one batch, and compile s."""
  import optax
  from flax import nnx

  from scalenet import train
  opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  model.train()
  graphdef, state = nnx.split((model, opt))
  data = {'image': jax.numpy.asarray(x), 'label': jax.numpy.asarray(y)}
  t0 = time.perf_counter()
  state, m = train.train_step(graphdef, state, data, 0.0)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats + 1):  # the first one after compiling is dropped too
    t0 = time.perf_counter()
    state, m = train.train_step(graphdef, state, data, 0.0)
    jax.block_until_ready(m)
    times.append((time.perf_counter() - t0) * 1e3)
  return {'median_ms': float(np.median(times[1:])), 'compile_s': compile_s}


def fwd_bwd(f):
  """A function whose cost is the forward and backward pass of f."""
  def loss(*args):
    return jax.numpy.sum(f(*args) ** 2)
  return jax.grad(loss, argnums=tuple(range(2)))


def environment() -> str:
  dev = jax.devices()[0]
  return f'jax {jax.__version__}, backend {jax.default_backend()}, {dev.device_kind}, {len(jax.devices())} device(s)'
