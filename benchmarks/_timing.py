"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import functools
import resource
import time

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def time_fn(fn, *args, repeats: int = 20, warmup: int = 2) -> dict:
  """Median/min wall time in ms of a jitted fn, its compile time in s, and the
  process's CPU time / wall time over the timed calls (1.0: one core busy)."""
  jitted = jax.jit(fn)
  t0 = time.perf_counter()
  jax.block_until_ready(jitted(*args))
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    jax.block_until_ready(jitted(*args))
  times = []
  cpu0 = _cpu_seconds()
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    times.append((time.perf_counter() - t0) * 1e3)
  cpu_per_wall = (_cpu_seconds() - cpu0) / (sum(times) / 1e3)
  return {'median_ms': float(np.median(times)), 'min_ms': float(np.min(times)),
          'compile_s': compile_s, 'cpu_per_wall': cpu_per_wall}


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def train_step(graphdef, state, batch):
  """One Adam step: the forward, loss, backward and update of
  `scalenet.train.train_step`, without its metrics. Kept here so that the
  benchmarks import no data stack (tensorflow-datasets), e.g. on a GPU host.
  """
  model, opt = nnx.merge(graphdef, state)

  def loss_fn(model):
    logits = model(batch['image'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  opt.update(model, grads)
  return nnx.state((model, opt)), loss


def train_state(model, x, y, lr: float = 1e-2):
  """(graphdef, state, batch) for `train_step`; the model in training mode.

  With several devices (e.g. XLA_FLAGS=--xla_force_host_platform_device_count=2
  on a CPU), data-parallel as `scalenet.train` runs it: the state replicated,
  the batch split over a 1-D mesh of every device.
  """
  opt = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
  model.train()
  graphdef, state = nnx.split((model, opt))
  batch = {'image': jax.numpy.asarray(x), 'label': jax.numpy.asarray(y)}
  devices = jax.devices()
  if len(devices) == 1:
    return graphdef, state, batch
  if len(y) % len(devices):
    raise ValueError(f'batch {len(y)} is not divisible by the {len(devices)} devices.')
  mesh = Mesh(np.array(devices), ('data',))
  return (graphdef, jax.device_put(state, NamedSharding(mesh, P())),
          jax.device_put(batch, NamedSharding(mesh, P('data'))))


def time_train_step(model, x, y, repeats: int = 5, budget_s: float | None = None) -> dict:
  """Median ms of one jitted Adam training step on one batch, and compile s.

  The first step after compiling is dropped. With `budget_s`, repeating stops
  once that many seconds went into timed steps (at least one is kept), so a
  step of minutes is timed once; `runs` says how many were.
  """
  graphdef, state, data = train_state(model, x, y)
  t0 = time.perf_counter()
  state, m = train_step(graphdef, state, data)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats + 1):
    t0 = time.perf_counter()
    state, m = train_step(graphdef, state, data)
    jax.block_until_ready(m)
    times.append((time.perf_counter() - t0) * 1e3)
    if budget_s is not None and sum(times) / 1e3 > budget_s:
      break
  kept = times[1:] or times
  return {'median_ms': float(np.median(kept)), 'compile_s': compile_s, 'runs': len(kept)}


def step_flops(model, x, y) -> float:
  """FLOPs of one `train_step` from XLA's cost analysis of its HLO."""
  graphdef, state, data = train_state(model, x, y)
  lowered = train_step.lower(graphdef, state, data)
  cost = None
  for get in (lowered.cost_analysis, lambda: lowered.compile().cost_analysis()):
    try:
      cost = get()
    except Exception:  # pylint: disable=broad-except  # absent in some versions/backends
      continue
    if cost:
      break
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get('flops', float('nan'))) if cost else float('nan')


def fwd_bwd(f):
  """A function whose cost is the forward and backward pass of f."""
  def loss(*args):
    return jax.numpy.sum(f(*args) ** 2)
  return jax.grad(loss, argnums=tuple(range(2)))


def environment() -> str:
  """The JAX version, backend, device kind and count (several: data-parallel steps)."""
  dev = jax.devices()[0]
  return f'jax {jax.__version__}, backend {jax.default_backend()}, {dev.device_kind}, {len(jax.devices())} device(s)'
