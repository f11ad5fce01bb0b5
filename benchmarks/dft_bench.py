"""conv2d's 'dft' path with its 2-D real stages against the separable stages.

  python benchmarks/dft_bench.py [--batch 128] [--repeats 5] [--rounds 2] [--only 14x14,...]

For each layer shape of the model zoo that 'auto' sends down the DFT path
(DSS 7x7 at dilations 1 and 2, SES 15x15, the CNN-28), forward+backward ms of
`conv2d(method='dft')` with the real arrays transformed by one 2-D product
(`conv.dft_2d_stages`, on for maps of at most `conv._DFT_2D_MAX_PIXELS`
pixels) and with the two separable complex stages (the threshold set to 0),
the ratio, and the largest difference between the two paths' outputs and
gradients relative to the largest entry. The two variants are interleaved
over `rounds` rounds (medians of the rounds), so a change of load hits both.
Maps larger than the threshold (28x28) show what the 2-D stages would cost
there.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._timing import environment, fwd_bwd, time_fn
from scalenet import conv

# (name, map size, Cin, Cout, kernel, dilation)
SHAPES = [
    ('dss 14x14 32->63 7x7', 14, 32, 63, 7, 1),
    ('dss 14x14 32->63 7x7 dil 2', 14, 32, 63, 7, 2),
    ('dss 7x7 63->95 7x7', 7, 63, 95, 7, 1),
    ('dss 7x7 63->95 7x7 dil 2', 7, 63, 95, 7, 2),
    ('ses 14x14 32->252 15x15', 14, 32, 252, 15, 1),
    ('ses 7x7 63->380 15x15', 7, 63, 380, 15, 1),
    ('cnn 28x28 32->63 7x7', 28, 32, 63, 7, 1),
    ('ses 28x28 1->128 15x15', 28, 1, 128, 15, 1),
]


def _variant(max_pixels: int):
  """conv2d(method='dft') with the 2-D stages on maps of <= max_pixels pixels."""
  def run(x, k, dilation):
    previous = conv._DFT_2D_MAX_PIXELS
    conv._DFT_2D_MAX_PIXELS = max_pixels  # read at trace time
    try:
      return conv.conv2d(x, k, dilation=dilation, method='dft')
    finally:
      conv._DFT_2D_MAX_PIXELS = previous
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--only', default='', help='comma-separated substrings of shape names')
  args = parser.parse_args()
  print(environment(), '| load average', np.round(os.getloadavg(), 2).tolist())
  print(f'2-D stages on maps of <= {conv._DFT_2D_MAX_PIXELS} pixels; fwd+bwd ms, '
        f'batch {args.batch}')
  print('| layer | 2-D stages | separable | separable / 2-D | max rel diff |')
  print('|---|---|---|---|---|')
  rng = np.random.default_rng(0)
  variants = {'2d': _variant(10**9), 'separable': _variant(0)}
  for name, size, cin, cout, k, dilation in SHAPES:
    if args.only and not any(s in name for s in args.only.split(',')):
      continue
    x = jnp.asarray(rng.standard_normal((args.batch, size, size, cin)), jnp.float32)
    kern = jnp.asarray(rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin),
                       jnp.float32)
    outs = {v: jax.jit(lambda x, kern, f=f: (f(x, kern, dilation),
                                             fwd_bwd(lambda a, b: f(a, b, dilation))(x, kern)))
            (x, kern) for v, f in variants.items()}
    diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
               for a, b in zip(jax.tree.leaves(outs['2d']), jax.tree.leaves(outs['separable'])))
    times = {v: [] for v in variants}
    for _ in range(args.rounds):
      for v, f in variants.items():
        step = fwd_bwd(lambda a, b, f=f: f(a, b, dilation))
        times[v].append(time_fn(step, x, kern, repeats=args.repeats)['median_ms'])
    two_d, sep = (float(np.median(times[v])) for v in ('2d', 'separable'))
    print(f'| {name} | {two_d:.2f} | {sep:.2f} | {sep / two_d:.2f}x | {diff:.1e} |', flush=True)
  print('load average at the end', np.round(os.getloadavg(), 2).tolist())


if __name__ == '__main__':
  main()
