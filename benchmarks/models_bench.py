"""Per model at its default MNIST config: parameters, fwd+bwd ms per batch, compile s.

  python benchmarks/models_bench.py [--batch 128] [--repeats 5] [--models cnn,dss_v1]

One jitted training step (forward, backward, Adam update) on a batch of
random 28x28 images; median of `repeats` after warm-up.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np
import optax
from flax import nnx

from benchmarks._timing import environment
from scalenet import models, train

MNIST_MODELS = ['cnn', 'dcn', 'dcnv2', 'dss_v1', 'dss_v2', 'deform_dss', 'sscnn', 'sesn']


def bench(name, batch, repeats):
  model = models.get_model(name, rngs=nnx.Rngs(0))
  params = models.count_params(model)
  opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  model.train()
  graphdef, state = nnx.split((model, opt))
  x = jax.random.uniform(jax.random.key(0), (batch, 28, 28, 1))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  data = {'image': x, 'label': y}
  t0 = time.perf_counter()
  state, m = train.train_step(graphdef, state, data, 0.0)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats + 1):
    t0 = time.perf_counter()
    state, m = train.train_step(graphdef, state, data, 0.0)
    jax.block_until_ready(m)
    times.append((time.perf_counter() - t0) * 1e3)
  return params, float(np.median(times[1:])), compile_s


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--models', default=','.join(MNIST_MODELS))
  args = parser.parse_args()
  print(environment())
  print(f'{"model":<12}{"params":>10}{"step ms":>10}{"img/s":>9}{"compile s":>11}')
  for name in args.models.split(','):
    params, ms, compile_s = bench(name, args.batch, args.repeats)
    print(f'{name:<12}{params:>10,}{ms:>10.1f}{args.batch / ms * 1e3:>9.0f}{compile_s:>11.1f}',
          flush=True)


if __name__ == '__main__':
  main()
