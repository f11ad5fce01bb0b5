"""Data: build time and size on disk per builder config, and pipeline images/s.

  python benchmarks/data_bench.py [--data-dir /tmp/scalenet_bench_tfds] [--source mnist_5k]

Builds scale_mnist from `source` in a fresh directory (timed), then measures
(a) reading the array_record data source example by example, (b) the
in-memory batch iterator the training loop uses, (c) the same with on-the-fly
scale augmentation.
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scalenet.data import make_builder, pipeline


def _du(path):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--data-dir', default='/tmp/scalenet_bench_tfds')
  parser.add_argument('--source', default='mnist_5k')
  parser.add_argument('--dataset', default='scale_mnist')
  parser.add_argument('--size', type=int, default=None)
  args = parser.parse_args()
  shutil.rmtree(args.data_dir, ignore_errors=True)
  builder = make_builder(args.dataset, source=args.source, size=args.size, data_dir=args.data_dir)
  t0 = time.perf_counter()
  builder.download_and_prepare()
  build_s = time.perf_counter() - t0
  print(f'{args.dataset}/{builder.builder_config.name} from {args.source}: built in {build_s:.1f} s, '
        f'{_du(args.data_dir) / 2**20:.1f} MiB on disk')
  src = builder.as_data_source()['train']
  n = len(src)
  t0 = time.perf_counter()
  for i in range(n):
    src[i]
  print(f'data source, one example at a time: {n / (time.perf_counter() - t0):,.0f} images/s')
  t0 = time.perf_counter()
  split = pipeline.read_split(src)
  print(f'read whole split into memory: {n / (time.perf_counter() - t0):,.0f} images/s')
  for augment in (None, (0.5, 1.0)):
    it = pipeline.train_batches(split, 128, seed=0, augment_scale=augment)
    next(it)  # compile the augmentation once
    t0, steps = time.perf_counter(), 200
    for _ in range(steps):
      next(it)
    rate = steps * 128 / (time.perf_counter() - t0)
    print(f'train batches (128){" + scale augmentation" if augment else ""}: {rate:,.0f} images/s')


if __name__ == '__main__':
  main()
