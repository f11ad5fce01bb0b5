"""Where a notebook user waits: the first get_model and repeated layer-wise Delta.

  python benchmarks/latency_bench.py [--model dss_v1]

Each figure in a fresh process (nothing compiled or cached before): the
first `get_model` (targets: dss_v1 under 3 s), then `layerwise_equivariance`
on 8 digits at s = 1/2, three calls on the same model and shapes (target:
the repeated calls under 1 s).
"""

import argparse
import os
import subprocess
import sys

CHILD = '''
import time, sys
t0 = time.perf_counter()
import jax
from flax import nnx
from scalenet import equivariance, models
from scalenet.data import readers
t1 = time.perf_counter()
model = models.get_model(sys.argv[1], rngs=nnx.Rngs(0))
t2 = time.perf_counter()
x = readers.read_mnist_5k()[0][:8].astype('float32') / 255.0
calls = []
for _ in range(3):
  t = time.perf_counter()
  equivariance.layerwise_equivariance(model, x, 0.5)
  calls.append(time.perf_counter() - t)
print(f'import {t1 - t0:.2f} s | first get_model {t2 - t1:.2f} s | layerwise_equivariance '
      f'calls {calls[0]:.2f} s, {calls[1]:.2f} s, {calls[2]:.2f} s')
'''


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='dss_v1')
  args = parser.parse_args()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, 'PYTHONPATH': root}
  out = subprocess.run([sys.executable, '-c', CHILD, args.model], env=env, capture_output=True,
                       text=True, check=True)
  print(f'{args.model}: {out.stdout.strip()}')


if __name__ == '__main__':
  main()
