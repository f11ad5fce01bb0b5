"""Data: preparing a protocol (rescale, write, read back), and pipeline images/s.

  python benchmarks/data_bench.py [--data-dir /tmp/scalenet_bench_tfds] [--source mnist_5k]
  python benchmarks/data_bench.py --source ../shared/data/mnist --generator reference  # 70k

First the rescale alone: one jitted call per image (how a per-image generator
would run) against `generate.rescale_images`'s batches of 1,024, on 4,096
images. Then builds scale_mnist from `source` in a fresh directory (timed:
every split, the six fixed-scale test splits included), reads every split
back into memory (as evaluate.py does), and measures (a) reading the
array_record data source example by example, (b) the in-memory batch
iterator the training loop uses, (c) the same with on-the-fly scale
augmentation.
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from scalenet.data import generate, make_builder, pipeline, readers


def _du(path):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--data-dir', default='/tmp/scalenet_bench_tfds')
  parser.add_argument('--source', default='mnist_5k')
  parser.add_argument('--dataset', default='scale_mnist')
  parser.add_argument('--size', type=int, default=None)
  parser.add_argument('--generator', default='default', choices=sorted(generate.GENERATORS))
  args = parser.parse_args()
  images = readers.read_mnist_5k()[0][:4096]
  factors = np.random.default_rng(0).uniform(0.3, 1.0, len(images))
  for label, chunk in (('one image per call', 1), ('batches of 1,024', 1024)):
    generate.rescale_images(images[:chunk], factors[:chunk], None, args.generator, chunk=chunk)
    t0 = time.perf_counter()
    generate.rescale_images(images, factors, None, args.generator, chunk=chunk)
    print(f'rescale ({args.generator}), {label}: '
          f'{len(images) / (time.perf_counter() - t0):,.0f} images/s')
  shutil.rmtree(args.data_dir, ignore_errors=True)
  builder = make_builder(args.dataset, source=args.source, size=args.size,
                         generator=args.generator, data_dir=args.data_dir)
  t0 = time.perf_counter()
  builder.download_and_prepare()
  build_s = time.perf_counter() - t0
  sources = builder.as_data_source()
  total = sum(len(v) for v in sources.values())
  print(f'{args.dataset}/{builder.builder_config.name} from {args.source}: {len(sources)} '
        f'splits, {total:,} images built in {build_s:.1f} s, '
        f'{_du(args.data_dir) / 2**20:.1f} MiB on disk')
  t0 = time.perf_counter()
  for split in sources.values():
    pipeline.read_split(split)
  print(f'every split read back into memory in {time.perf_counter() - t0:.1f} s')
  src = sources['train']
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
