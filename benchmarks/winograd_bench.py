"""Winograd F(2x2, 3x3) against the direct conv on the model zoo's 3x3 shapes.

  python benchmarks/winograd_bench.py [--batch 128] [--repeats 5] [--chunks 4,8,16,32]

For each shape (H, Cin, Cout, dilation; 'SAME', stride 1): forward+backward
ms of conv2d's 'direct' path (no channel padding; every count here is already
a multiple of 32 or below it) and of `winograd.conv3x3` with chunk='auto' and
with each fixed chunk; `winograd._CHUNK_BYTES` was set from these. Variants
are interleaved over `rounds` rounds (medians of the rounds), so a change of
load hits all of them alike. Whole models down the Winograd path:
`compare_torch.py --paths auto,direct,winograd`.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np

from benchmarks._timing import environment, fwd_bwd, time_fn
from scalenet import conv, winograd

# (name, H, Cin, Cout, dilation): dss_v1 (3x3 scale convs, 4 levels, widths
# 32/64/96, pooled twice), the study CNN and a ResNet-style 3x3.
SHAPES = [
    ('dss_v1 28x28 1->32', 28, 1, 32, 1),
    ('dss_v1 28x28 1->32 dil 4', 28, 1, 32, 4),
    ('dss_v1 14x14 32->64', 14, 32, 64, 1),
    ('dss_v1 14x14 32->64 dil 2', 14, 32, 64, 2),
    ('dss_v1 14x14 32->64 dil 8', 14, 32, 64, 8),
    ('dss_v1 7x7 64->96', 7, 64, 96, 1),
    ('dss_v1 7x7 64->96 dil 4', 7, 64, 96, 4),
    ('cnn 28x28 32->32', 28, 32, 32, 1),
    ('28x28 64->64', 28, 64, 64, 1),
]


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--chunks', default='4,8,16,32')
  parser.add_argument('--only', default='', help='comma-separated substrings of shape names')
  args = parser.parse_args()
  print(environment(), '| load average', os.getloadavg())
  rng = np.random.default_rng(0)
  chunks = [int(c) for c in args.chunks.split(',') if c]
  for name, h, cin, cout, d in SHAPES:
    if args.only and not any(s in name for s in args.only.split(',')):
      continue
    x = rng.standard_normal((args.batch, h, h, cin), np.float32)
    k = rng.standard_normal((3, 3, cin, cout), np.float32) / np.sqrt(9 * cin)
    variants = {'direct': lambda x, k: conv.conv2d(x, k, dilation=d, method='direct')}
    n = args.batch * d * d
    auto = winograd.chunk_size(n, winograd.subimage_tiles(h, h, d), max(cin, cout))
    for c in ['auto', *[c for c in chunks if n % c == 0 and c != auto]]:
      variants[f'wino[{auto if c == "auto" else c}]'] = (
          lambda x, k, c=c: winograd.conv3x3(x, k, dilation=d, chunk=c))
    ms = {label: [] for label in variants}
    for _ in range(args.rounds):
      for label, f in variants.items():
        ms[label].append(time_fn(fwd_bwd(f), x, k, repeats=args.repeats, warmup=1)['median_ms'])
    ms = {label: float(np.median(v)) for label, v in ms.items()}
    cols = '  '.join(f'{label} {v:.1f}' for label, v in ms.items())
    best = min(v for label, v in ms.items() if label != 'direct')
    print(f'{name:<28}{cols}  | direct / wino[auto] {ms["direct"] / ms[f"wino[{auto}]"]:.2f}, '
          f'direct / best wino {ms["direct"] / best:.2f}', flush=True)
  print('load average at the end', os.getloadavg())


if __name__ == '__main__':
  main()
