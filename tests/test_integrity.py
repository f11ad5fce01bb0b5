"""Run integrity: evaluation tests the run it trained, failures lose nothing, one
process per workdir, best-on-validation selection, the '+' setting, eval cost."""

import json
import os
import re
import socket
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from flax import nnx

from scalenet import checkpoint, config as config_lib, evaluate, metrics, runtime, train
from scalenet import run_record, transforms
from scalenet.data import pipeline
from configs import cnn_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(data_dir, **overrides):
  config = cnn_mnist.get_config('tiny')
  config.data_dir = data_dir
  config.progress_bar = False
  config.halt_after_steps = None  # one 10-step epoch: one validation
  config.eval_scale_factors = (0.5, 1.0, 2.0)
  for k, v in overrides.items():
    config[k] = v
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_dir, datasets):
  """One epoch of the tiny CNN: (workdir, config)."""
  wd = str(tmp_path_factory.mktemp('run'))
  config = _config(data_dir)
  train.train_and_evaluate(config, wd, datasets)
  return wd, config


@pytest.fixture(scope='module')
def evaluated(trained, datasets):
  """`trained`, evaluated once (eval/results.json), whichever test runs first."""
  wd, config = trained
  if not os.path.exists(os.path.join(wd, 'eval', 'results.json')):
    evaluate.evaluate(None, wd, datasets)
  return wd, config


def _strip(res):
  return {k: v for k, v in res.items() if k not in ('equivariance',)}


# --- Run identity -----------------------------------------------------------

def test_evaluate_without_config_equals_training_config(trained, datasets):
  wd, config = trained
  own = evaluate.evaluate(None, wd, datasets)
  given = evaluate.evaluate(config, wd, datasets)
  assert _strip(own) == _strip(given)
  assert own['data']['realization'] == 0 and own['data']['data_source'] == 'mnist_5k'
  assert own['data']['source_identity'] == 'mnist_5k'
  assert own['data']['rescale'] == {'method': 'linear', 'antialias': True}
  assert own['checkpoint'] == {'kind': 'latest', 'step': 10, 'epoch': 1.0}


@pytest.mark.parametrize('overrides,keys', [
    ({'realization': 1}, 'realization'), ({'data_source': 'download'}, 'data_source'),
    ({'image_size': 56}, 'image_size'), ({'model': {'channels': (4, 16)}}, 'model'),
    ({'generator': 'reference', 'rescale': {'method': 'cubic', 'antialias': False}},
     'generator, rescale')])
def test_contradicting_config_is_refused_naming_the_key(trained, datasets, overrides, keys):
  wd, config = trained
  other = _config(config.data_dir, **overrides)
  with pytest.raises(checkpoint.CheckpointError, match=f'disagrees with the run on {keys} '):
    evaluate.evaluate(other, wd, datasets)
  with pytest.raises(checkpoint.CheckpointError, match=f'resuming .* on {keys} '):
    train.train_and_evaluate(other, wd, datasets)
  # Negative control: an explicitly stated default is the same run.
  same = _config(config.data_dir, image_size=28, data_source='mnist_5k')
  assert evaluate.run_config(wd, same).image_size == 28


def test_evaluation_restores_only_the_weights(tmp_path, data_dir, datasets):
  """An SGD run evaluated with an Adam config (optimizer is no identity key)."""
  train.train_and_evaluate(_config(data_dir, optimizer='sgd', halt_after_steps=3),
                           str(tmp_path), datasets)
  res = evaluate.evaluate(_config(data_dir, eval_checkpoint='latest'), str(tmp_path), datasets)
  assert res['checkpoint']['step'] == 3


def test_config_without_checkpoint_does_not_block_a_new_run(tmp_path, data_dir, datasets):
  from scalenet.data import DataError
  from configs import dss_v1_mnist
  failed = dss_v1_mnist.get_config('tiny')
  failed.data_dir, failed.data_source = data_dir, str(tmp_path / 'no_such_dir')
  with pytest.raises(DataError):
    train.train_and_evaluate(failed, str(tmp_path / 'wd'))
  assert (tmp_path / 'wd' / 'config.json').exists()
  out = train.train_and_evaluate(_config(data_dir, halt_after_steps=2), str(tmp_path / 'wd'),
                                 datasets)
  assert out['step'] == 2
  assert run_record.read_config(str(tmp_path / 'wd')).model_name == 'cnn'


# --- Nothing lost -----------------------------------------------------------

def _saved_steps_are_finite(workdir, config, datasets):
  mngr = checkpoint.manager(workdir, read_only=True)
  tx = train.make_optimizer(config, train.make_schedule(config, 10))
  for step in mngr.all_steps():
    _, _, state = train.create_state(config, datasets.num_classes, tx, runtime.make_mesh())
    state, _ = checkpoint.restore(mngr, state, step)  # raises on non-finite values
    assert checkpoint.all_finite(nnx.to_pure_dict(state))
  return sorted(mngr.all_steps())


def test_nan_run_keeps_its_good_checkpoints(tmp_path, data_dir, datasets):
  # The reproduction: every second step saved, metrics only at step 12.
  config = _config(data_dir, optimizer='sgd', learning_rate=1e6, log_every_steps=12,
                   checkpoint_every_steps=2, schedule='constant')
  with jax.debug_nans(False):
    with pytest.raises(FloatingPointError, match=r'at step (\d+)') as err:
      train.train_and_evaluate(config, str(tmp_path), datasets)
    bad = int(re.search(r'at step (\d+)', str(err.value)).group(1))
    steps = _saved_steps_are_finite(str(tmp_path), config, datasets)
    assert steps and max(steps) < bad, (steps, bad)
    assert f'Nothing after step {max(steps)} was saved' in str(err.value)
    # A rerun is refused until the user chooses; resuming anyway (the failure
    # record deleted) starts from the last good state (not a NaN one) and stops
    # again. (It may get a step further: at lr 1e6, overflow is at float32's edge.)
    with pytest.raises(checkpoint.CheckpointError, match='FAILED.json'):
      train.train_and_evaluate(config, str(tmp_path), datasets)
    os.remove(tmp_path / 'FAILED.json')
    with pytest.raises(FloatingPointError, match=r'at step (\d+)') as err:
      train.train_and_evaluate(config, str(tmp_path), datasets)
    again = _saved_steps_are_finite(str(tmp_path), config, datasets)
    assert set(steps) <= set(again)
    assert f'Nothing after step {max(again)} was saved' in str(err.value)
  assert not (tmp_path / 'lock').exists()


def test_non_finite_checkpoint_is_neither_resumed_nor_evaluated(tmp_path, data_dir, datasets):
  """A NaN state saved by an older version: refused, naming the checkpoint."""
  config = _config(data_dir, halt_after_steps=2)
  train.train_and_evaluate(config, str(tmp_path), datasets)
  tx = train.make_optimizer(config, train.make_schedule(config, 10))
  _, _, state = train.create_state(config, 10, tx, runtime.make_mesh())
  state = jax.tree.map(lambda x: np.asarray(x) * np.nan
                       if jax.numpy.issubdtype(x.dtype, jax.numpy.inexact) else x, state)
  mngr = checkpoint.manager(str(tmp_path))
  checkpoint.save(mngr, 3, state, force=True)
  mngr.wait_until_finished()
  with pytest.raises(checkpoint.CheckpointError, match='checkpoints/3 holds non-finite'):
    evaluate.evaluate(None, str(tmp_path), datasets)
  with pytest.raises(checkpoint.CheckpointError, match='checkpoints/3 holds non-finite'):
    train.train_and_evaluate(_config(data_dir, halt_after_steps=4), str(tmp_path), datasets)


def test_exploding_loss_is_reported_as_divergence(tmp_path, data_dir, datasets):
  config = _config(data_dir, learning_rate=1e6, log_every_steps=12, schedule='constant')
  with jax.debug_nans(False), pytest.raises(metrics.DivergenceError, match=r'diverged at step'):
    train.train_and_evaluate(config, str(tmp_path), datasets)


def test_diverged_run_is_not_resumed_silently(tmp_path, data_dir, datasets):
  # The reproduction: lr 1e6 diverges after checkpoints were saved;
  # a rerun at a sane rate must not quietly continue from those weights.
  wd = str(tmp_path)
  bad = _config(data_dir, learning_rate=1e6, schedule='constant', checkpoint_every_steps=1,
                log_every_steps=1)
  with jax.debug_nans(False), pytest.raises(FloatingPointError, match='FAILED.json'):
    train.train_and_evaluate(bad, wd, datasets)
  failed = json.load(open(os.path.join(wd, 'FAILED.json')))
  assert failed['step'] >= 2 and failed['last_saved_step'] >= 1
  assert checkpoint.has_checkpoint(wd)
  good = _config(data_dir, halt_after_steps=failed['last_saved_step'] + 2)
  with pytest.raises(checkpoint.CheckpointError, match='new --workdir.*delete .*FAILED.json'):
    train.train_and_evaluate(good, wd, datasets)
  assert failed == json.load(open(os.path.join(wd, 'FAILED.json')))  # kept for diagnosis
  # The explicit way out: delete the record, resume; the run's first loss
  # stays the divergence reference, and the change of rate is recorded.
  os.remove(os.path.join(wd, 'FAILED.json'))
  guard_refs = []
  real_guard = metrics.FiniteGuard
  def spy(**kw):
    guard_refs.append(kw.get('reference'))
    return real_guard(**kw)
  with pytest.MonkeyPatch.context() as mp, jax.debug_nans(False):
    mp.setattr(metrics, 'FiniteGuard', spy)
    try:
      train.train_and_evaluate(good, wd, datasets)
    except FloatingPointError:
      pass  # blown-up weights may fail again: that is the user's informed choice
  assert guard_refs and guard_refs[0] == metrics.first_logged_loss(wd) is not None
  history = [json.loads(l) for l in open(os.path.join(wd, 'config_history.jsonl'))]
  assert history[0]['changed']['learning_rate'] == [1e6, good.learning_rate]


def test_resume_records_changed_training_keys(tmp_path, data_dir, datasets):
  wd = str(tmp_path)
  train.train_and_evaluate(_config(data_dir, halt_after_steps=6), wd, datasets)
  train.train_and_evaluate(_config(data_dir, halt_after_steps=8, learning_rate=0.5,
                                   batch_size=16, progress_bar=True), wd, datasets)
  history = [json.loads(l) for l in open(os.path.join(wd, 'config_history.jsonl'))]
  assert history == [{'step': 6, 'changed': {'batch_size': [32, 16],
                                             'learning_rate': [0.01, 0.5]}}]
  saved = run_record.read_config(wd)  # the config in force from step 6 on
  assert (saved.learning_rate, saved.batch_size) == (0.5, 16)
  # Resuming with the same config adds nothing.
  train.train_and_evaluate(_config(data_dir, halt_after_steps=9, learning_rate=0.5,
                                   batch_size=16), wd, datasets)
  assert len(open(os.path.join(wd, 'config_history.jsonl')).readlines()) == 1


def test_metrics_hold_each_step_once_after_a_killed_run_resumes(tmp_path, data_dir, datasets):
  wd = str(tmp_path)
  train.train_and_evaluate(_config(data_dir, halt_after_steps=6, log_every_steps=2), wd,
                           datasets)
  with open(os.path.join(wd, 'metrics.jsonl'), 'a') as f:  # logged, then killed before a save
    for step in (8, 10):
      f.write(json.dumps({'step': step, 'train/loss': 9.9}) + '\n')
  train.train_and_evaluate(_config(data_dir, halt_after_steps=10, log_every_steps=2), wd,
                           datasets)
  steps = [json.loads(l)['step'] for l in open(os.path.join(wd, 'metrics.jsonl'))
           if 'train/loss' in l]
  assert steps == [2, 4, 6, 8, 10]
  assert 9.9 not in [json.loads(l).get('train/loss') for l in open(os.path.join(wd,
                                                                                'metrics.jsonl'))]


def test_evaluation_checks_its_output_first_and_writes_where_asked(trained, datasets, tmp_path,
                                                                   monkeypatch, caplog):
  wd, _ = trained
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  def never(*a, **k):
    raise AssertionError('computed before checking the output location')
  with monkeypatch.context() as mp:
    mp.setattr(runtime, 'evaluate_split', never)
    with pytest.raises(PermissionError, match='a_file.*--out'):
      evaluate.evaluate(None, wd, datasets, out_dir=str(blocker / 'eval'))
  before = set(os.listdir(wd))
  with caplog.at_level('WARNING'):
    res = evaluate.evaluate(None, wd, datasets, out_dir=str(tmp_path / 'elsewhere'))
  assert (tmp_path / 'elsewhere' / 'results.json').exists() and res['step'] > 0
  assert set(os.listdir(wd)) <= before | {'eval'}  # the run's files untouched
  assert not any('read only' in r.getMessage() for r in caplog.records)


def test_full_disk_is_named_with_the_way_out(tmp_path):
  import errno
  writer = metrics.MetricWriter(str(tmp_path))
  def full(*a, **k):
    raise OSError(errno.ENOSPC, 'No space left on device')
  writer._tb.add_scalar = full
  with pytest.raises(OSError, match=f'no space left on the disk of {tmp_path}.*step 7.*resumes'):
    writer.write(7, {'loss': 1.0})
  writer._tb.add_scalar = lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, 'io'))
  with pytest.raises(OSError, match='io'):  # other errors pass through unchanged
    writer.write(8, {'loss': 1.0})
  writer.close()


def test_progress_counts_finished_steps_and_says_why_it_halted(tmp_path, data_dir, datasets,
                                                              monkeypatch, capsys):
  class Recorder:
    def __init__(self, total, initial, enabled):
      self.n, self.updates, self.total = initial, [], total
    def update(self, k):
      self.updates.append(k)
      self.n += k
    def set_postfix(self, **kw):
      pass
    def write(self, text):
      print(text)
    def close(self):
      pass
  bars = []
  monkeypatch.setattr(train, '_progress', lambda *a: bars.append(Recorder(*a)) or bars[-1])
  train.train_and_evaluate(_config(data_dir, halt_after_steps=7, log_every_steps=3,
                                   checkpoint_every_steps=100), str(tmp_path), datasets)
  # The bar moves when the host has seen the steps finish (orbax's first save
  # at step 1, the logs at 3 and 6, the final save at 7), never ahead of them.
  assert bars[0].updates == [1, 2, 3, 1] and bars[0].n == 7
  out = capsys.readouterr().out
  assert 'halted after step 7 of 10 (config.halt_after_steps=7)' in out


def test_guard_names_the_first_bad_step():
  guard = metrics.FiniteGuard(saved_step=4)
  for step, loss, finite in [(5, 2.3, 1.0), (6, 2.0, 1.0), (7, 1.5, 0.0), (8, np.nan, 0.0)]:
    guard.add(step, {'loss': np.float32(loss), 'finite': np.float32(finite)})
  with pytest.raises(FloatingPointError, match='state at step 7.*after step 4'):
    guard.check()
  guard.add(9, {'loss': np.float32(2.3e4 + 1), 'finite': np.float32(1.0)})
  with pytest.raises(metrics.DivergenceError, match='step 9'):
    guard.check()
  guard.add(10, {'loss': np.float32(2.3e4 - 1), 'finite': np.float32(1.0)})
  guard.check()  # Negative control: below 1e4 x the first loss.


# --- One process per workdir ------------------------------------------------

def test_second_process_on_a_locked_workdir_is_refused(tmp_path, data_dir, datasets):
  wd = str(tmp_path / 'wd')
  with checkpoint.workdir_lock(wd):
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
    out = subprocess.run(
        [sys.executable, 'train.py', '--config', 'configs/cnn_mnist.py:tiny', '--workdir', wd,
         f'--config.data_dir={data_dir}', '--config.progress_bar=false'],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert f'in use by process {os.getpid()}' in out.stderr
    with pytest.raises(checkpoint.WorkdirLocked, match=str(os.getpid())):
      train.train_and_evaluate(_config(data_dir, halt_after_steps=1), wd, datasets)
  assert not os.path.exists(os.path.join(wd, 'lock'))  # released on exit
  # A lock whose process is gone is stale.
  gone = subprocess.Popen([sys.executable, '-c', 'pass'])
  gone.wait()
  with open(os.path.join(wd, 'lock'), 'w') as f:
    json.dump({'pid': gone.pid, 'host': socket.gethostname()}, f)
  assert train.train_and_evaluate(_config(data_dir, halt_after_steps=1), wd, datasets)['step'] == 1
  assert not os.path.exists(os.path.join(wd, 'lock'))


# --- Best-on-validation selection --------------------------------------------

def test_best_checkpoint_is_selected_and_evaluated(tmp_path, data_dir, datasets, monkeypatch):
  config = _config(data_dir, num_epochs=3, checkpoint_every_steps=10, keep_checkpoints=1,
                   eval_checkpoint='best')
  scripted = iter([0.3, 0.6, 0.6])  # Epoch 3 ties epoch 2: not a strict improvement.
  real = runtime.evaluate_split
  monkeypatch.setattr(runtime, 'evaluate_split',
                      lambda *a, **k: {'accuracy': next(scripted), 'loss': 1.0})
  out = train.train_and_evaluate(config, str(tmp_path), datasets)
  monkeypatch.setattr(runtime, 'evaluate_split', real)
  assert out['best'] == {'step': 20, 'epoch': 2, 'validation_accuracy': 0.6}
  assert checkpoint.manager(str(tmp_path), read_only=True).all_steps() == [30]
  res = evaluate.evaluate(None, str(tmp_path), datasets)
  assert res['checkpoint'] == {'kind': 'best', 'step': 20, 'epoch': 2, 'validation_accuracy': 0.6}
  assert res['step'] == 20
  # The evaluated weights are step 20's, not the latest (30).
  eval_def, fresh = runtime.create_model(config, 10, runtime.make_mesh())
  best, _ = checkpoint.restore_weights(checkpoint.best_manager(str(tmp_path), True), fresh)
  latest, _ = checkpoint.restore_weights(checkpoint.manager(str(tmp_path), read_only=True),
                                         runtime.create_model(config, 10, runtime.make_mesh())[1])
  acc = real(eval_def, best, datasets.eval['test'], 64, runtime.make_mesh())['accuracy']
  assert acc == res['accuracy_by_split']['test']
  diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), nnx.to_pure_dict(best),
                      nnx.to_pure_dict(latest))
  assert max(jax.tree.leaves(diff)) > 0


# --- Evaluation cost ----------------------------------------------------------

def test_eval_step_compiles_once_per_input_shape(trained, datasets, monkeypatch):
  wd, config = trained
  counted = jax.jit(chex.assert_max_traces(runtime._eval_step, n=1), static_argnums=(0, 4, 5))
  monkeypatch.setattr(runtime, 'eval_step', counted)
  calls = []
  real = runtime.evaluate_split
  monkeypatch.setattr(runtime, 'evaluate_split', lambda *a, **k: calls.append(a[2]) or real(*a, **k))
  res = evaluate.evaluate(None, wd, datasets)  # 4 splits + 1 on-the-fly factor: one trace
  assert set(res['accuracy_vs_scale']) == {'0.5000', '1.0000', '2.0000'}
  # Each split once; the unscaled one a second time for the enlargement (2.0) only.
  assert len(calls) == len(datasets.eval) + 1
  eval_def, state = runtime.create_model(config, 10, runtime.make_mesh())
  with pytest.raises(AssertionError, match='traced > 1'):  # Negative control: a new shape.
    real(eval_def, state, datasets.eval['test'], 32, runtime.make_mesh())


# --- The '+' setting ----------------------------------------------------------

def test_plus_augments_only_the_training_split(tmp_path, data_dir, datasets, monkeypatch):
  split = datasets.train
  before = split.images.copy()
  plain = next(pipeline.train_batches(split, 16, seed=0))
  plus = next(pipeline.train_batches(split, 16, seed=0, augment_scale=(0.5, 2.0)))
  np.testing.assert_array_equal(plain['label'], plus['label'])
  assert np.abs(plain['image'] - plus['image']).max() > 0.5
  assert plus['image'].min() >= 0.0 and plus['image'].max() <= 1.0
  np.testing.assert_array_equal(split.images, before)
  # The operator: a fixed factor 2 is the bicubic, non-antialiased L_s.
  two = next(pipeline.train_batches(split, 16, seed=0, augment_scale=(2.0, 2.0)))
  want = np.clip(transforms.RescaleSpec('cubic', antialias=False)(plain['image'], 2.0), 0, 1)
  np.testing.assert_allclose(two['image'], want, atol=1e-5)

  # In a '+' run, training batches are rescaled and validation batches are not.
  seen = {'train': [], 'eval': []}
  real_train, real_eval = train.train_step, runtime.eval_step
  monkeypatch.setattr(train, 'train_step',
                      lambda g, s, b, *a: seen['train'].append(np.asarray(b['image'])) or
                      real_train(g, s, b, *a))
  monkeypatch.setattr(runtime, 'eval_step',
                      lambda g, s, b, *a: seen['eval'].append(np.asarray(b['image'])) or
                      real_eval(g, s, b, *a))
  config = config_lib.plus(_config(data_dir))
  train.train_and_evaluate(config, str(tmp_path), datasets)
  raw = [b['image'] for b in pipeline.eval_batches(datasets.eval['validation'], 64)]
  assert len(seen['eval']) == len(raw)
  for got, want in zip(seen['eval'], raw):
    np.testing.assert_array_equal(got, want)
  unaugmented = pipeline.train_batches(split, 32, seed=0)
  assert all(np.abs(got - next(unaugmented)['image']).max() > 0.1 for got in seen['train'])


# --- Smaller items ------------------------------------------------------------

def test_progress_switch_covers_reading_splits(capsys):
  examples = [{'image': np.zeros((1, 1, 1), np.uint8), 'label': 0, 'scale': 1.0}] * 20_001
  pipeline.read_split(examples, progress=False, desc='test')
  assert 'reading' not in capsys.readouterr().err
  pipeline.read_split(examples, progress=True, desc='test')
  assert 'reading test' in capsys.readouterr().err  # Positive control.
  from tensorflow_datasets.core.utils import tqdm_utils
  with pipeline._tfds_progress(False):  # tfds's bars while preparing a data set
    assert not tqdm_utils._active
  assert tqdm_utils._active


def test_compare_accepts_the_readme_forms_and_labels_runs_uniquely(tmp_path, evaluated):
  wd, _ = evaluated
  a, b = tmp_path / 'a' / 'run', tmp_path / 'b' / 'run'
  for d in (a, b):
    (d / 'eval').mkdir(parents=True)
    (d / 'eval' / 'results.json').write_text(
        (open(os.path.join(wd, 'eval', 'results.json'))).read())
  assert evaluate.run_labels([str(a), str(b)]) == ['a/run', 'b/run']
  assert evaluate.run_labels([str(a), str(tmp_path / 'c')]) == ['run', 'c']
  for args in ([str(a), str(b)], [f'{a},{b}']):
    out = subprocess.run([sys.executable, 'evaluate.py', '--compare', *args, '--out',
                          str(tmp_path / 'cmp')], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, XLA_FLAGS=''))
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'compared 2 runs' in out.stdout
    table = (tmp_path / 'cmp' / 'comparison.md').read_text()
    assert 'a/run' in table and 'b/run' in table
