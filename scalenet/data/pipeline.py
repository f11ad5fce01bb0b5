"""Input pipeline: prepared tfds data sources -> numpy batches for the train step.

Splits are small (MNIST-scale: 62k images of 784 bytes), so each split is
read once from the array_record data source into memory; batches are then
pure functions of (seed, epoch, step), which makes resumed runs see exactly
the batches an uninterrupted run would (benchmarks/data_bench.py measures it
against reading the data source per batch).
"""

from __future__ import annotations

import dataclasses
import contextlib
import functools
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from scalenet import transforms
from scalenet.data import builders


@dataclasses.dataclass(frozen=True)
class Split:
  """One split in memory: images uint8 [N, H, W, C], labels int32 [N], scales float32 [N]."""
  images: np.ndarray
  labels: np.ndarray
  scales: np.ndarray

  def __len__(self):
    return len(self.labels)


def read_split(source, progress: bool = False, desc: str = '') -> Split:
  """Reads a whole split (a tfds data source, or any sequence of examples)."""
  n = len(source)
  get_many = getattr(source, '__getitems__', lambda idx: [source[i] for i in idx])
  images, labels, scales = [], [], []
  chunks = range(0, n, 4096)
  if progress and n > 20_000:
    from tqdm.auto import tqdm
    chunks = tqdm(chunks, desc=f'reading {desc}', leave=False)
  for start in chunks:
    for ex in get_many(list(range(start, min(n, start + 4096)))):
      images.append(ex['image']), labels.append(ex['label']), scales.append(ex['scale'])
  return Split(np.stack(images), np.asarray(labels, np.int32), np.asarray(scales, np.float32))


def _local(rows: np.ndarray, process_index: int, process_count: int) -> np.ndarray:
  """This process's contiguous share of a global batch (multi-host)."""
  per = len(rows) // process_count
  return rows[process_index * per:(process_index + 1) * per]


def _to_float(images: np.ndarray) -> np.ndarray:
  return images.astype(np.float32) / 255.0


@functools.partial(jax.jit, static_argnums=2)
def _augment(images, factors, spec: transforms.RescaleSpec):
  one = lambda x, f: spec(x[None], f)[0]
  return jnp.clip(jax.vmap(one)(images, factors), 0.0, 1.0)


def train_batches(split: Split, batch_size: int, *, seed: int, start_step: int = 0,
                  augment_scale=None,
                  augment_rescale: transforms.RescaleSpec = transforms.RescaleSpec(
                      'cubic', antialias=False),
                  process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """Endless shuffled batches; batch k depends only on (seed, k): resumable.

  Each epoch is a fresh permutation drawn from (seed, epoch); the last
  incomplete batch of an epoch is dropped. With `augment_scale=(lo, hi)`
  (the '+' setting: (0.5, 2.0)) every image is rescaled about its centre by
  a factor from U(lo, hi) drawn from (seed, step), with L_s =
  `augment_rescale` (default bicubic without antialiasing; the reference's
  torchvision RandomAffine is PIL's affine transform, 'pil_bicubic'), then
  clipped to [0, 1] as PIL's uint8 output is. Only training batches are augmented.

  Yields:
    {'image': float32 [B/P, H, W, C] in [0, 1], 'label': int32 [B/P]} with
    P = process_count (each process yields its share of the global batch).
  """
  steps_per_epoch = len(split) // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f'batch_size {batch_size} is larger than the training split '
                     f'({len(split)} examples).')
  step, perm, perm_epoch = start_step, None, -1
  while True:
    epoch, i = divmod(step, steps_per_epoch)
    if epoch != perm_epoch:
      perm, perm_epoch = np.random.default_rng([seed, epoch]).permutation(len(split)), epoch
    idx = _local(perm[i * batch_size:(i + 1) * batch_size], process_index, process_count)
    images = _to_float(split.images[idx])
    if augment_scale is not None:
      factors = np.random.default_rng([seed, step, 1]).uniform(*augment_scale, len(idx))
      images = np.asarray(_augment(images, factors.astype(np.float32), augment_rescale))
    yield {'image': images, 'label': split.labels[idx]}
    step += 1


def eval_batches(split: Split, batch_size: int, *, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict]:
  """Every example exactly once, in order; the last batch is zero-padded.

  Yields:
    {'image', 'label', 'mask'}: mask is 1.0 for real examples, 0.0 for padding.
  """
  n = len(split)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    valid = idx < n
    idx = _local(np.where(valid, idx, 0), process_index, process_count)
    mask = _local(valid, process_index, process_count).astype(np.float32)
    yield {'image': _to_float(split.images[idx]) * mask[:, None, None, None],
           'label': split.labels[idx] * mask.astype(np.int32), 'mask': mask}


@dataclasses.dataclass
class Datasets:
  """Everything the training loop needs from the data layer."""
  train: Split
  eval: dict  # split name -> Split: 'validation', 'test', 'test_s1000', ...
  num_classes: int
  image_shape: tuple

  def steps_per_epoch(self, batch_size: int) -> int:
    return len(self.train) // batch_size


@contextlib.contextmanager
def _tfds_progress(enabled: bool):
  """tfds's own bars (preparing splits) on or off for the block."""
  from tensorflow_datasets.core.utils import tqdm_utils
  was = tqdm_utils._active  # pylint: disable=protected-access  (tfds has no getter)
  tqdm_utils.display_progress_bar(enabled)
  try:
    yield
  finally:
    tqdm_utils.display_progress_bar(was)


def _corrupt(path: str, what: str, e: Exception) -> builders.readers.DataError:
  return builders.readers.DataError(
      f'{what} in {path} cannot be read ({type(e).__name__}: {e}); the prepared files are '
      f'corrupt or truncated. Delete {path} and run again: it is rebuilt from the source.')


_CORRUPT_SIGNS = ('riegeli', 'corrupt', 'truncat', 'checksum', 'unexpected end', 'crc')


def _is_corrupt(e: Exception) -> bool:
  return any(sign in str(e).lower() for sign in _CORRUPT_SIGNS)


def prepare(config, progress: bool = True):
  """Builds (if needed) and opens the data set `config.dataset` -> tfds data sources.

  Raises:
    DataError: prepared files that cannot be read, naming their directory
      and how to rebuild them.
  """
  builder = builders.make_builder(config.dataset, source=config.get('data_source'),
                                  realization=config.get('realization', 0),
                                  size=config.get('image_size'),
                                  generator=config.get('generator', 'default'),
                                  data_dir=config.data_dir)
  with _tfds_progress(progress):
    builder.download_and_prepare()
  try:
    sources = builder.as_data_source()
  except (RuntimeError, OSError, ValueError) as e:
    if _is_corrupt(e):
      raise _corrupt(str(builder.data_path), 'the prepared data', e) from e
    raise
  return {name: _Checked(src, str(builder.data_path), name) for name, src in sources.items()}


class _Checked:
  """A tfds data source whose read errors from corrupt files name the files and the fix."""

  def __init__(self, source, path: str, split: str):
    self._source, self._path, self._split = source, path, split

  def __len__(self):
    return len(self._source)

  def _guard(self, fn, *args):
    try:
      return fn(*args)
    except (RuntimeError, OSError, ValueError) as e:
      if _is_corrupt(e):
        raise _corrupt(self._path, f'split {self._split!r}', e) from e
      raise

  def __getitem__(self, i):
    return self._guard(self._source.__getitem__, i)

  def __getitems__(self, idx):
    get = getattr(self._source, '__getitems__', lambda ids: [self._source[i] for i in ids])
    return self._guard(get, idx)


def get_datasets(config, progress: bool | None = None, eval_splits=None) -> Datasets:
  """Opens the data set named by `config` and reads its splits into memory.

  Config keys: dataset, data_dir, data_source (None = the data set's default),
  realization, image_size (None = the smallest), generator, eval_splits
  (None = all except train; `eval_splits` overrides it), progress_bar (every
  bar, unless `progress` is given).
  """
  if progress is None:
    progress = config.get('progress_bar', True)
  sources = prepare(config, progress)
  names = eval_splits or config.get('eval_splits') or [s for s in sources if s != 'train']
  missing = sorted(set(names) - set(sources))
  if missing:
    raise ValueError(f'config.eval_splits names unknown split(s) {missing}; '
                     f'{config.dataset} has {sorted(sources)}.')
  train = read_split(sources['train'], progress, 'train')
  evals = {n: read_split(sources[n], progress, n) for n in names}
  return Datasets(train, evals, num_classes=10, image_shape=train.images.shape[1:])
