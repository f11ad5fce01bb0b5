"""Per model at its default MNIST config: parameters, fwd+bwd ms per batch, compile s.

  python benchmarks/models_bench.py [--batch 128] [--repeats 5] [--models cnn,dss_v1]

One jitted training step (forward, backward, Adam update) on a batch of
random 28x28 images; median of `repeats` after warm-up.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
from flax import nnx

from benchmarks._timing import environment, time_train_step
from scalenet import models

MNIST_MODELS = ['cnn', 'dcn', 'dcnv2', 'dss_v1', 'dss_v2', 'deform_dss', 'sscnn', 'sesn']


def bench(name, batch, repeats):
  model = models.get_model(name, rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(0), (batch, 28, 28, 1))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  t = time_train_step(model, x, y, repeats)
  return models.count_params(model), t['median_ms'], t['compile_s']


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
