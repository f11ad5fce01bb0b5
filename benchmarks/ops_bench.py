"""Times scalenet's ops (scale_conv, deform_conv and its autodiff oracle), forward and fwd+bwd.

  python benchmarks/ops_bench.py [--repeats 20]

DSS-sized layer: B=32, S=4, 28x28, 32->32 channels, 3x3, interaction 2.
DCN-sized layer: B=32, 28x28, 32->32, 3x3, padding 1, random offsets.
Prints the median (and min) of `repeats` jitted runs after warm-up.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax

from benchmarks._timing import environment, fwd_bwd, time_fn
from scalenet import deform, scale_convolution


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--repeats', type=int, default=20)
  args = parser.parse_args()
  keys = jax.random.split(jax.random.key(0), 6)
  print(environment())
  print(f'{"op":<34}{"fwd ms":>10}{"fwd+bwd ms":>12}{"compile s":>11}')

  x = jax.random.normal(keys[0], (32, 4, 28, 28, 32))
  k = jax.random.normal(keys[1], (2, 3, 3, 32, 32)) * 0.05
  f = lambda x, k: scale_convolution.scale_conv(x, k, base=2)
  fw = time_fn(f, x, k, repeats=args.repeats)
  bw = time_fn(fwd_bwd(f), x, k, repeats=args.repeats)
  print(f'{"scale_conv":<34}{fw["median_ms"]:>10.2f}'
        f'{bw["median_ms"]:>12.2f}{bw["compile_s"]:>11.2f}')

  xi = jax.random.normal(keys[2], (32, 28, 28, 32))
  kd = jax.random.normal(keys[3], (3, 3, 32, 32)) * 0.05
  off = jax.random.normal(keys[4], (32, 28, 28, 9, 2))
  mask = jax.nn.sigmoid(jax.random.normal(keys[5], (32, 28, 28, 9)))
  # chunk 'auto' (cache-sized batch chunks on CPU) and the whole batch at once.
  for impl, chunk in [(i, c) for i in deform.IMPLS for c in ('auto', 32)]:
    for name, m in (('v1', None), ('v2', mask)):
      f = lambda x, k, impl=impl, m=m, chunk=chunk: deform.deform_conv(
          x, off, k, mask=m, padding=1, impl=impl, chunk=chunk)
      fw = time_fn(f, xi, kd, repeats=args.repeats)
      bw = time_fn(fwd_bwd(f), xi, kd, repeats=args.repeats)
      tag = f'{impl},{"auto" if chunk == "auto" else "whole"}'
      print(f'{f"deform_conv_{name}[{tag}]":<40}{fw["median_ms"]:>10.2f}'
            f'{bw["median_ms"]:>12.2f}{bw["compile_s"]:>11.2f}')
  plain = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  fw, bw = time_fn(plain, xi, kd, repeats=args.repeats), time_fn(fwd_bwd(plain), xi, kd, repeats=args.repeats)
  print(f'{"plain conv (reference)":<34}{fw["median_ms"]:>10.2f}{bw["median_ms"]:>12.2f}{bw["compile_s"]:>11.2f}')


if __name__ == '__main__':
  main()
