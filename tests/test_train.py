import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from scalenet import checkpoint, config as config_lib, evaluate, runtime, train
from scalenet.data import pipeline
from configs import cnn_mnist, dss_v1_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(data_dir, module=cnn_mnist, **overrides):
  config = module.get_config('tiny')
  config.data_dir = data_dir
  config.progress_bar = False
  for k, v in overrides.items():
    config[k] = v
  return config


def _why(stderr: str) -> str:
  """A failed subprocess's reason: its fatal log lines (a native abort ends in
  pages of stack) and the end of its stderr."""
  fatal = [line for line in stderr.splitlines() if re.match(r'F\d{4} |Fatal ', line)]
  return '\n'.join(fatal[:5] + ['...', stderr[-1500:]])


def _final_params(workdir, config, datasets):
  mesh = runtime.make_mesh()
  tx = train.make_optimizer(config, train.make_schedule(config, 10))
  _, _, state = train.create_state(config, datasets.num_classes, tx, mesh)
  state, step = checkpoint.restore(checkpoint.manager(workdir, read_only=True), state)
  return step, jax.tree.map(np.asarray, nnx.to_pure_dict(state))


@pytest.mark.parametrize('num_devices', [1, 4])
def test_end_to_end_train_then_evaluate(tmp_path, data_dir, datasets, num_devices):
  assert jax.device_count() == 4  # tests/conftest.py forces four host devices
  config = _config(data_dir, dss_v1_mnist, halt_after_steps=None, num_epochs=2)
  mesh = runtime.make_mesh(jax.devices()[:num_devices])
  out = train.train_and_evaluate(config, str(tmp_path), datasets, mesh=mesh)
  assert out['step'] == 20 and np.isfinite(out['loss'])
  assert 0.0 <= out['validation_accuracy'] <= 1.0
  assert os.path.isdir(tmp_path / 'checkpoints' / '20')
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert any('train/loss' in json.loads(l) for l in lines)
  assert any('validation/accuracy' in json.loads(l) for l in lines)
  assert os.listdir(tmp_path / 'tensorboard')
  res = evaluate.evaluate(config, str(tmp_path), datasets)
  for name in ('results.json', 'results.md', 'accuracy_vs_scale.png'):
    assert (tmp_path / 'eval' / name).stat().st_size > 0
  assert res['step'] == 20 and res['checkpoint']['kind'] == 'latest'
  assert set(res['accuracy_vs_scale']) >= {'1.0000', '0.5000', '2.0000'}


def test_resume_reaches_the_same_parameters(tmp_path, data_dir, datasets, monkeypatch):
  """Crashed mid-epoch in step 8 (last checkpoint at 6), restarted; then a
  graceful halt after step 13 (saved there), restarted again."""
  config = _config(data_dir, halt_after_steps=None, num_epochs=2, checkpoint_every_steps=3)
  train.train_and_evaluate(config, str(tmp_path / 'straight'), datasets)
  real_step, calls = train.train_step, []

  def crashing_step(*args, **kwargs):
    calls.append(1)
    if len(calls) == 8:
      raise KeyboardInterrupt('simulated kill')
    return real_step(*args, **kwargs)

  monkeypatch.setattr(train, 'train_step', crashing_step)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, str(tmp_path / 'resumed'), datasets)
  monkeypatch.setattr(train, 'train_step', real_step)
  assert checkpoint.manager(str(tmp_path / 'resumed'), read_only=True).latest_step() == 6
  halted = _config(data_dir, halt_after_steps=13, num_epochs=2, checkpoint_every_steps=3)
  assert train.train_and_evaluate(halted, str(tmp_path / 'resumed'), datasets)['step'] == 13
  assert checkpoint.manager(str(tmp_path / 'resumed'), read_only=True).latest_step() == 13
  train.train_and_evaluate(config, str(tmp_path / 'resumed'), datasets)
  step_a, a = _final_params(str(tmp_path / 'straight'), config, datasets)
  step_b, b = _final_params(str(tmp_path / 'resumed'), config, datasets)
  assert step_a == step_b == 20
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6), a, b)
  # Negative control: a run with another seed ends elsewhere.
  other = _config(data_dir, halt_after_steps=None, num_epochs=2, seed=1)
  train.train_and_evaluate(other, str(tmp_path / 'other'), datasets)
  _, c = _final_params(str(tmp_path / 'other'), other, datasets)
  diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a, c))
  assert max(diffs) > 1e-3


def test_multi_device_step_equals_single_device_step(data_dir, datasets):
  # SGD: the update is linear in the gradient. (Adam's first step is about
  # lr * sign(g), which turns float noise in near-zero gradients into
  # full-size differences.) Covers the gradient all-reduce and BatchNorm
  # statistics over the whole global batch.
  config = _config(data_dir, dss_v1_mnist, optimizer='sgd', learning_rate=0.1)
  batch = next(pipeline.train_batches(datasets.train, 16, seed=0))
  results = []
  for n in (1, 4):
    mesh = runtime.make_mesh(jax.devices()[:n])
    tx = train.make_optimizer(config, train.make_schedule(config, 10))
    train_def, _, state = train.create_state(config, 10, tx, mesh)
    state, metrics = train.train_step(train_def, state, runtime.shard_batch(batch, mesh), 0.0)
    results.append((jax.tree.map(np.asarray, nnx.to_pure_dict(state)), jax.device_get(metrics)))
  (s1, m1), (s4, m4) = results
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), s1, s4)
  np.testing.assert_allclose(m1['loss'], m4['loss'], rtol=1e-5)


def test_schedule_applies_over_steps():
  config = config_lib.default_config()
  config.learning_rate, config.lr_decay_epochs, config.lr_decay_factor = 0.1, (2,), 0.1
  sched = train.make_schedule(config, steps_per_epoch=5)
  assert float(sched(9)) == pytest.approx(0.1) and float(sched(10)) == pytest.approx(0.01)
  config.schedule = 'cosine'
  sched = train.make_schedule(config, steps_per_epoch=5)
  assert float(sched(0)) == pytest.approx(0.1) and float(sched(300)) < 1e-6


def test_bad_config_and_batch_errors(tmp_path, data_dir, datasets):
  config = _config(data_dir)
  with config.unlocked():
    config.learnig_rate = 0.1
  with pytest.raises(ValueError, match="unknown config key 'learnig_rate'.*learning_rate"):
    train.train_and_evaluate(config, str(tmp_path), datasets)
  with pytest.raises(ValueError, match='divisible by the number of devices'):
    train.train_and_evaluate(_config(data_dir, batch_size=30), str(tmp_path), datasets)
  with pytest.raises(ValueError, match='optimizer'):
    train.train_and_evaluate(_config(data_dir, optimizer='lbfgs'), str(tmp_path), datasets)
  with pytest.raises(ValueError, match='chanels'):
    cfg = _config(data_dir)
    cfg.model = dict(chanels=(4,))
    train.train_and_evaluate(cfg, str(tmp_path), datasets)


def test_missing_dataset_error(tmp_path):
  from scalenet.data import DataError
  config = _config(str(tmp_path), data_source=str(tmp_path / 'no_such_dir'))
  with pytest.raises(DataError, match='neither one of'):
    train.train_and_evaluate(config, str(tmp_path / 'wd'))


def test_non_finite_loss_names_the_step(tmp_path, data_dir, datasets):
  config = _config(data_dir, optimizer='sgd', learning_rate=1e12, log_every_steps=1,
                   schedule='constant')
  with jax.debug_nans(False), pytest.raises(FloatingPointError, match=r'at step \d+'):
    train.train_and_evaluate(config, str(tmp_path), datasets)


def test_corrupt_checkpoint_is_reported_and_left_alone(tmp_path, data_dir, datasets):
  config = _config(data_dir, halt_after_steps=6, checkpoint_every_steps=6)
  train.train_and_evaluate(config, str(tmp_path), datasets)
  ckpt = tmp_path / 'checkpoints' / '6'
  files = [p for p in ckpt.rglob('*') if p.is_file() and p.stat().st_size > 0]
  for p in files:
    p.write_bytes(b'garbage')
  before = {str(p): p.read_bytes() for p in files}
  with pytest.raises(checkpoint.CheckpointError, match='cannot be restored'):
    train.train_and_evaluate(config, str(tmp_path), datasets)
  assert {str(p): p.read_bytes() for p in files} == before


def test_other_model_in_same_workdir_is_refused(tmp_path, data_dir, datasets):
  train.train_and_evaluate(_config(data_dir, halt_after_steps=2), str(tmp_path), datasets)
  with pytest.raises(checkpoint.CheckpointError, match='disagrees with the run on model_name'):
    train.train_and_evaluate(_config(data_dir, dss_v1_mnist, halt_after_steps=2),
                             str(tmp_path), datasets)


def test_evaluate_without_checkpoint_and_compare(tmp_path, data_dir, datasets):
  with pytest.raises(checkpoint.CheckpointError, match='no checkpoint'):
    evaluate.evaluate(_config(data_dir), str(tmp_path / 'empty'), datasets)
  runs = []
  for name in ('a', 'b'):
    wd = tmp_path / name
    config = _config(data_dir, halt_after_steps=3, checkpoint_every_steps=3)
    train.train_and_evaluate(config, str(wd), datasets)
    evaluate.evaluate(config, str(wd), datasets)
    runs.append(str(wd))
  evaluate.compare(runs, str(tmp_path / 'cmp'))
  assert (tmp_path / 'cmp' / 'comparison.md').read_text().count('| cnn') == 2


def test_command_line_entry_points(tmp_path, data_dir):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  common = ['--config', 'configs/cnn_mnist.py:tiny', '--workdir', str(tmp_path),
            f'--config.data_dir={data_dir}', '--config.progress_bar=false']
  run = lambda script, *args: subprocess.run([sys.executable, script, *args], cwd=ROOT,
                                             env=env, capture_output=True, text=True)
  out = run('train.py', *common)
  assert out.returncode == 0, _why(out.stderr)
  out = run('evaluate.py', *common)
  assert out.returncode == 0, _why(out.stderr)
  assert '| test |' in out.stdout
  with_config = json.loads((tmp_path / 'eval' / 'results.json').read_text())
  out = run('evaluate.py', '--workdir', str(tmp_path))  # the run's own config.json
  assert out.returncode == 0, _why(out.stderr)
  assert json.loads((tmp_path / 'eval' / 'results.json').read_text()) == with_config
  out = run('evaluate.py', *common, '--config.realization=1')
  assert out.returncode != 0 and 'disagrees with the run on realization' in out.stderr
  bad = run('train.py', *common, '--config.learnig_rate=0.1')
  assert bad.returncode != 0 and 'learnig_rate' in bad.stderr


def test_sweep_trains_each_distinct_point_once_resumes_and_plots(tmp_path, data_dir,
                                                                 monkeypatch):
  from scalenet import sweep
  from configs import sweep_dss_mnist
  config = sweep_dss_mnist.get_config('tiny')
  config.data_dir, config.progress_bar = data_dir, False
  calls = []
  real_train = train.train_and_evaluate
  monkeypatch.setattr(train, 'train_and_evaluate',
                      lambda c, wd: calls.append(os.path.basename(wd)) or real_train(c, wd))
  done = sweep.run_sweep(config, str(tmp_path))
  assert set(done) == {'model.interaction', 'learning_rate'}
  assert set(done['model.interaction']) == {'1', '2'}
  # interaction=2 and learning_rate=0.01 are both the base config: one run.
  assert sorted(calls) == ['base', 'model.interaction=1']
  assert done['learning_rate']['0.01'] is done['model.interaction']['2']
  assert done['model.interaction']['1']['model']['interaction'] == 1
  for by_value in done.values():  # the tiny points learn: chance is 0.1
    for r in by_value.values():
      assert r['test_accuracy'] > 0.3, r['test_accuracy']
  assert (tmp_path / 'plots' / 'model_interaction_accuracy.png').stat().st_size > 0
  assert (tmp_path / 'plots' / 'model_interaction_equivariance.png').stat().st_size > 0
  sweep.run_sweep(config, str(tmp_path))  # everything evaluated: nothing retrains
  assert len(calls) == 2
  with config.unlocked():
    config.sweep = (('model.interactoin', (1,)),)
  with pytest.raises(ValueError, match='interactoin'):
    sweep.run_sweep(config, str(tmp_path))


def test_sweep_refuses_a_link_to_a_missing_run_before_training(tmp_path, monkeypatch):
  from scalenet import sweep
  from configs import sweep_dss_mnist
  monkeypatch.setattr(train, 'train_and_evaluate', lambda c, wd: pytest.fail('trained'))
  os.symlink(tmp_path / 'A' / 'dss_v1' / 'r0', tmp_path / sweep.BASE_RUN)
  with pytest.raises(FileNotFoundError, match=r'base links to .*A/dss_v1/r0.*run it first'):
    sweep.run_sweep(sweep_dss_mnist.get_config('tiny'), str(tmp_path))


def test_full_sweep_points_are_distinct_runs():
  from scalenet import sweep
  from configs import sweep_dss_mnist
  for arg in (None, 'deform_dss'):
    points = sweep.sweep_points(sweep_dss_mnist.get_config(arg))
    assert len(points) == 14
    runs = {}
    for p in points:
      runs.setdefault(p.run, set()).add(sweep._identity(p.config))
    assert all(len(ids) == 1 for ids in runs.values())  # a run is one config
    assert len({next(iter(ids)) for ids in runs.values()}) == len(runs) == 10
    base = [f'{p.key}={p.value}' for p in points if p.run == sweep.BASE_RUN]
    assert sorted(base) == ['learning_rate=0.01', 'model.base=2', 'model.channels=(32, 64, 96)',
                            'model.interaction=2', 'model.num_scales=4']
  with pytest.raises(ValueError, match='tinny'):
    sweep_dss_mnist.get_config('tinny')


def test_sweep_axis_alone_keeps_the_full_sweeps_runs():
  # 'only=KEY' runs one axis: the same points, in the same run directories.
  from scalenet import sweep
  from configs import sweep_dss_mnist
  for arg in (None, 'deform_dss'):
    full = sweep.sweep_points(sweep_dss_mnist.get_config(arg))
    for key in ('learning_rate', 'model.channels'):
      alone = sweep.sweep_points(sweep_dss_mnist.get_config(','.join(filter(None, (arg, f'only={key}')))))
      assert [(p.key, p.value, p.run) for p in alone] == \
          [(p.key, p.value, p.run) for p in full if p.key == key]
  with pytest.raises(ValueError, match=r"only=\['lr'\].*not a swept key"):
    sweep_dss_mnist.get_config('only=lr')


def test_eval_step_has_no_cross_device_reduction(data_dir, datasets):
  # Per-example outputs, summed on the host: an all-reduce in the eval step could
  # stall XLA:CPU's simulated devices (runtime._eval_step).
  config = _config(data_dir)
  mesh = runtime.make_mesh()
  assert mesh.size > 1  # conftest's simulated devices
  eval_def, state = runtime.create_model(config, datasets.num_classes, mesh)
  batch = next(pipeline.eval_batches(datasets.eval['validation'], config.eval_batch_size))
  args = (eval_def, state, runtime.shard_batch(batch, mesh), jax.numpy.float32(2.0),
          train.transforms.DEFAULT, 'none')
  hlo = runtime.eval_step.lower(*args).compile().as_text()
  assert 'all-reduce' not in hlo
  summed = jax.jit(lambda out: jax.tree.map(jax.numpy.sum, out))  # Negative control.
  assert 'all-reduce' in summed.lower(runtime.eval_step(*args)).compile().as_text()
  # And the host sums are the split's: correct / count is the accuracy.
  split = datasets.eval['validation']
  res = runtime.evaluate_split(eval_def, state, split, config.eval_batch_size, mesh)
  logits = np.asarray(nnx.merge(eval_def, state)(split.images.astype(np.float32) / 255.0))
  want = float(np.mean(np.argmax(logits, -1) == split.labels))
  assert res['accuracy'] == pytest.approx(want, abs=1e-6)
