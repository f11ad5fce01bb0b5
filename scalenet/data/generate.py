"""Seeded generation of scale-varied data sets (numpy in, numpy out).

Protocol (Ghosh & Gupta 2019, as used by Sosnovik et al. 2020): permute the
image pool with the realization seed, split it, rescale every image by a
factor drawn from U(0.3, 1.0) about its centre (bilinear, anti-aliased when
shrinking) and zero-pad back to the original size. Fixed-scale test splits
rescale the *unscaled* test pool by one factor each, so accuracy-vs-scale
curves use the same images at every scale.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from scalenet import transforms

FACTOR_RANGE = (0.3, 1.0)
FIXED_TEST_FACTORS = (1.0, 1 / 1.1, 1 / 1.5, 1 / 2, 1 / 2.5, 1 / 3)
MNIST_SIZES = {'full': (10_000, 2_000, 50_000), 'mnist_5k': (3_000, 500, 1_500)}


def fixed_split_name(factor: float) -> str:
  """'test_s0500' for factor 0.5: split names tfds accepts."""
  return f'test_s{int(round(factor * 1000)):04d}'


@functools.partial(jax.jit, static_argnames='size')
def _rescale_batch(images, factors, size):
  x = images.astype(jnp.float32)
  if size != x.shape[1]:
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear')
  one = lambda img, f: transforms.rescale(img[None], f, antialias=True)[0]
  return jax.vmap(one)(x, factors)


def rescale_images(images: np.ndarray, factors: np.ndarray, size: int | None = None,
                   chunk: int = 1024) -> np.ndarray:
  """uint8 [N, H, W, C] -> uint8 [N, size, size, C], image i rescaled by factors[i].

  With size > H the image is first bilinearly enlarged to size x size (the
  56x56 variant), then rescaled.
  """
  size = size or images.shape[1]
  out = np.empty((len(images), size, size, images.shape[3]), np.uint8)
  for i in range(0, len(images), chunk):
    y = _rescale_batch(images[i:i + chunk], np.asarray(factors[i:i + chunk], np.float32), size)
    out[i:i + chunk] = np.clip(np.round(np.asarray(y)), 0, 255).astype(np.uint8)
  return out


def _scaled(images, labels, factors, size):
  return {'image': rescale_images(images, factors, size), 'label': labels.astype(np.int64),
          'scale': factors.astype(np.float32)}


def fixed_scale_splits(images, labels, size=None) -> dict:
  """{'test_s1000': ..., 'test_s0909': ...}: the same images at every factor."""
  return {fixed_split_name(f): _scaled(images, labels, np.full(len(images), f), size)
          for f in FIXED_TEST_FACTORS}


def pooled_splits(images, labels, sizes, realization: int, size=None,
                  factor_range=FACTOR_RANGE) -> dict:
  """Permute one pool, cut train/validation/test, rescale randomly; fixed test splits.

  Args:
    images, labels: the whole pool (uint8 [N, H, W, C], int [N]).
    sizes: (train, validation, test) counts, summing to at most N.
    realization: seed of the permutation and of the factors.
  """
  if sum(sizes) > len(images):
    raise ValueError(f'split sizes {sizes} exceed the pool of {len(images)} images.')
  perm = np.random.default_rng(realization).permutation(len(images))
  factors = np.random.default_rng([realization, 1]).uniform(*factor_range, sum(sizes))
  out, start = {}, 0
  for name, n in zip(('train', 'validation', 'test'), sizes):
    idx = perm[start:start + n]
    out[name] = _scaled(images[idx], labels[idx], factors[start:start + n], size)
    start += n
  test_idx = perm[sizes[0] + sizes[1]:sum(sizes)]
  out.update(fixed_scale_splits(images[test_idx], labels[test_idx], size))
  return out


def train_test_splits(train_x, train_y, test_x, test_y, validation: int, realization: int,
                      factor_range=FACTOR_RANGE) -> dict:
  """CIFAR-style: validation cut from the train set; the test set kept apart."""
  perm = np.random.default_rng(realization).permutation(len(train_x))
  rng = np.random.default_rng([realization, 1])
  val, tr = perm[:validation], perm[validation:]
  out = {}
  for name, (x, y) in {'train': (train_x[tr], train_y[tr]),
                       'validation': (train_x[val], train_y[val]),
                       'test': (test_x, test_y)}.items():
    out[name] = _scaled(x, y, rng.uniform(*factor_range, len(x)), None)
  out.update(fixed_scale_splits(test_x, test_y))
  return out
