"""Seeded generation of scale-varied data sets (numpy in, numpy out).

Protocol (Ghosh & Gupta 2019, as used by Sosnovik et al. 2020): split an
image pool with the realization seed, rescale every image by a factor drawn
from U(0.3, 1.0) about its centre with L_s (`scalenet.transforms.rescale`),
keeping the canvas (zero fill). Fixed-scale test splits rescale the
*unscaled* test pool by one factor each, with the same L_s, so
accuracy-vs-scale curves use the same images at every scale.

Two generators (`GENERATORS`, `config.data_generator`):
  * 'default': bilinear L_s, antialiased when shrinking; the pool permuted
    and cut in order.
  * 'reference': as ISosnovik/sesn's `prepare_datasets.py`: bicubic L_s
    without antialiasing, zero fill, and a split stratified by label,
    train+validation against test first, then train against validation (as
    sklearn's `train_test_split(..., stratify=)`). Its 56x56 images are the
    28x28 ones up-sampled x2 by nearest neighbour, as the reference's `*_56`
    models do with `nn.Upsample`. Its bicubic is Keys' a = -0.5
    (`jax.image`'s 'cubic'), where the reference's PIL affine BICUBIC is
    a = -1 (a few percent apart on digits; results/mnist_scale.md says
    which runs used which).
  * 'reference_pil': 'reference' with PIL's own kernel ('pil_bicubic',
    `transforms.pil_bicubic_matrix`, equal to PIL's float affine transform).
The bytes differ from the reference's (other random streams, no PIL); the
distribution and the split sizes per class are the same.

References: Sosnovik, Szmaja, Smeulders, "Scale-Equivariant Steerable
Networks", ICLR 2020; Ghosh & Gupta, "Scale Steerable Filters for Locally
Scale-Invariant Convolutional Neural Networks", 2019.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from scalenet import transforms

FACTOR_RANGE = (0.3, 1.0)
FIXED_TEST_FACTORS = (1.0, 1 / 1.1, 1 / 1.5, 1 / 2, 1 / 2.5, 1 / 3)
MNIST_SIZES = {'full': (10_000, 2_000, 50_000), 'mnist_5k': (3_000, 500, 1_500)}


@dataclasses.dataclass(frozen=True)
class Generator:
  """How a scale-varied data set is made from its pool.

  Attributes:
    spec: the rescale operator L_s of the random and the fixed-scale splits.
    split: 'permutation' (permute the pool, cut in order) or 'stratified'
      (per-class proportions kept in every split; see `stratified_split`).
    enlarge: how the 56x56 variant is made: 'before' (bilinear enlargement
      of the source, then L_s at 56) or 'nearest_after' (L_s at the source
      size, then nearest-neighbour up-sampling).
  """
  spec: transforms.RescaleSpec
  split: str
  enlarge: str

  def tag(self) -> str:
    """A name for cache keys: every field that changes the bytes."""
    aa = '_aa' if self.spec.antialias else ''
    return f'{self.spec.method}{aa}_{self.split}_{self.enlarge}'


GENERATORS = {
    'default': Generator(transforms.RescaleSpec('linear', antialias=True), 'permutation',
                         'before'),
    'reference': Generator(transforms.RescaleSpec('cubic', antialias=False), 'stratified',
                           'nearest_after'),
    'reference_pil': Generator(transforms.RescaleSpec('pil_bicubic', antialias=False),
                               'stratified', 'nearest_after'),
}


def get_generator(name: str) -> Generator:
  if name not in GENERATORS:
    raise ValueError(f'unknown data generator {name!r}; choose from {sorted(GENERATORS)}.')
  return GENERATORS[name]


def fixed_split_name(factor: float) -> str:
  """'test_s0500' for factor 0.5: split names tfds accepts."""
  return f'test_s{int(round(factor * 1000)):04d}'


@functools.partial(jax.jit, static_argnames=('size', 'spec', 'enlarge'))
def _rescale_batch(images, factors, size, spec, enlarge):
  x = images.astype(jnp.float32)
  if size != x.shape[1] and enlarge == 'before':
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear')
  one = lambda img, f: spec(img[None], f)[0]
  y = jax.vmap(one)(x, factors)
  if size != y.shape[1]:  # 'nearest_after'
    y = transforms.nearest_upsample(y, size // y.shape[1])
  return y


def rescale_images(images: np.ndarray, factors: np.ndarray, size: int | None = None,
                   generator: Generator | str = 'default', chunk: int = 1024) -> np.ndarray:
  """uint8 [N, H, W, C] -> uint8 [N, size, size, C], image i rescaled by factors[i].

  Args:
    images: uint8 [N, H, W, C].
    factors: [N] scale factors (< 1 shrinks).
    size: output size (default H); larger sizes are made as `generator.enlarge`
      says ('nearest_after' needs a multiple of H).
    generator: a Generator or a key of GENERATORS; its spec is L_s.
    chunk: images per jitted call.
  """
  gen = get_generator(generator) if isinstance(generator, str) else generator
  size = size or images.shape[1]
  if gen.enlarge == 'nearest_after' and size % images.shape[1]:
    raise ValueError(f'nearest up-sampling needs a multiple of {images.shape[1]}; got {size}.')
  out = np.empty((len(images), size, size, images.shape[3]), np.uint8)
  for i in range(0, len(images), chunk):
    y = _rescale_batch(images[i:i + chunk], np.asarray(factors[i:i + chunk], np.float32),
                       size, gen.spec, gen.enlarge)
    out[i:i + chunk] = np.clip(np.round(np.asarray(y)), 0, 255).astype(np.uint8)
  return out


def _allocate(counts: np.ndarray, n: int, rng: np.random.Generator,
              cap: np.ndarray | None = None) -> np.ndarray:
  """Per-class counts summing to n, proportional to `counts` (largest remainder).

  Class c gets floor(n * p_c) or that plus one (p_c = counts[c] / sum), never
  more than cap[c]; ties of the remainder are broken at random.
  """
  cap = counts if cap is None else cap
  exact = n * counts / counts.sum()
  take = np.minimum(np.floor(exact).astype(np.int64), cap)
  order = np.lexsort((rng.random(len(counts)), -(exact - take)))
  for c in order:
    if take.sum() == n:
      break
    if take[c] < cap[c]:
      take[c] += 1
  if take.sum() != n:
    raise ValueError(f'cannot draw {n} examples from classes of sizes {counts.tolist()}.')
  return take


def stratified_split(labels: np.ndarray, sizes, seed) -> tuple[np.ndarray, ...]:
  """Indices of (train, validation, test), each with the pool's class proportions.

  As the reference protocol: train+validation against test first, then train
  against validation within train+validation, each split drawn per class
  (largest-remainder rounding, so class c of a split of n examples holds
  floor or ceil of n * its share); images of the pool beyond sum(sizes) are
  left out. Each split is returned in a random order.

  Args:
    labels: int [N] class labels of the pool.
    sizes: (train, validation, test) counts, summing to at most N.
    seed: anything `np.random.default_rng` takes.
  """
  labels = np.asarray(labels)
  if sum(sizes) > len(labels):
    raise ValueError(f'split sizes {tuple(sizes)} exceed the pool of {len(labels)} images.')
  rng = np.random.default_rng(seed)
  classes = np.unique(labels)
  members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
  counts = np.array([len(m) for m in members])
  n_train, n_val, n_test = sizes
  test_take = _allocate(counts, n_test, rng)
  trval_take = _allocate(counts, n_train + n_val, rng, cap=counts - test_take)
  train_take = _allocate(trval_take, n_train, rng)
  splits = ([], [], [])
  for m, tr, tv, te in zip(members, train_take, trval_take, test_take):
    splits[0].append(m[:tr]), splits[1].append(m[tr:tv]), splits[2].append(m[tv:tv + te])
  return tuple(rng.permutation(np.concatenate(s).astype(np.int64)) for s in splits)


def permutation_split(n: int, sizes, seed) -> tuple[np.ndarray, ...]:
  """Indices of (train, validation, test): one permutation of range(n), cut in order."""
  if sum(sizes) > n:
    raise ValueError(f'split sizes {tuple(sizes)} exceed the pool of {n} images.')
  perm = np.random.default_rng(seed).permutation(n)
  bounds = np.cumsum([0, *sizes])
  return tuple(perm[a:b] for a, b in zip(bounds[:-1], bounds[1:]))


def _scaled(images, labels, factors, size, generator):
  return {'image': rescale_images(images, factors, size, generator),
          'label': labels.astype(np.int64), 'scale': factors.astype(np.float32)}


def fixed_scale_splits(images, labels, size=None, generator: Generator | str = 'default'
                       ) -> dict:
  """{'test_s1000': ..., 'test_s0909': ...}: the same images at every factor."""
  return {fixed_split_name(f): _scaled(images, labels, np.full(len(images), f), size, generator)
          for f in FIXED_TEST_FACTORS}


def pooled_splits(images, labels, sizes, realization: int, size=None,
                  factor_range=FACTOR_RANGE, generator: Generator | str = 'default') -> dict:
  """Split one pool into train/validation/test, rescale randomly; fixed test splits.

  Args:
    images, labels: the whole pool (uint8 [N, H, W, C], int [N]).
    sizes: (train, validation, test) counts, summing to at most N.
    realization: seed of the split and of the factors.
    size: output image size (default: the pool's).
    factor_range: (lo, hi) of the uniform scale factors.
    generator: a Generator or a key of GENERATORS.
  """
  gen = get_generator(generator) if isinstance(generator, str) else generator
  if gen.split == 'stratified':
    parts = stratified_split(labels, sizes, realization)
  else:
    parts = permutation_split(len(images), sizes, realization)
  factors = np.random.default_rng([realization, 1]).uniform(*factor_range, sum(sizes))
  out, start = {}, 0
  for name, idx in zip(('train', 'validation', 'test'), parts):
    out[name] = _scaled(images[idx], labels[idx], factors[start:start + len(idx)], size, gen)
    start += len(idx)
  out.update(fixed_scale_splits(images[parts[2]], labels[parts[2]], size, gen))
  return out


def train_test_splits(train_x, train_y, test_x, test_y, validation: int, realization: int,
                      factor_range=FACTOR_RANGE, generator: Generator | str = 'default'
                      ) -> dict:
  """CIFAR-style: validation cut from the train set; the test set kept apart."""
  perm = np.random.default_rng(realization).permutation(len(train_x))
  rng = np.random.default_rng([realization, 1])
  val, tr = perm[:validation], perm[validation:]
  out = {}
  for name, (x, y) in {'train': (train_x[tr], train_y[tr]),
                       'validation': (train_x[val], train_y[val]),
                       'test': (test_x, test_y)}.items():
    out[name] = _scaled(x, y, rng.uniform(*factor_range, len(x)), None, generator)
  out.update(fixed_scale_splits(test_x, test_y, None, generator))
  return out
