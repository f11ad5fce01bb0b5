"""The study's report (scalenet.study), its run script, and its scale-CIFAR-10 setting."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import resnet50_scale_cifar10
from scalenet import config as config_lib, evaluate, models, records, study, train
from scalenet.data import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'scripts', 'run_study.sh')
FACTORS = ('0.2500', '0.5000', '0.9091', '2.0000')


def _write_run(path, *, test_acc, delta_logits, layers=('block0.conv', 'block0', 'logits'),
               model='cnn', params=1000):
  """A run directory as scripts/run_study.sh leaves it (eval/results.json, config.json, times)."""
  os.makedirs(os.path.join(path, 'eval'))
  scale = {'0.3333': test_acc - 0.2, '0.5000': test_acc - 0.05, '0.9091': test_acc - 0.01,
           '1.0000': test_acc, '2.0000': test_acc - 0.5}
  # Delta grows with the change: factor 0.25 largest, 0.9091 smallest.
  grow = {'0.2500': 3.0, '0.5000': 1.0, '0.9091': 0.2, '2.0000': 2.0}
  results = {
      'model_name': model, 'params': params, 'test_accuracy': test_acc,
      'accuracy_by_split': {'test': test_acc}, 'accuracy_vs_scale': scale,
      'data': {'dataset': 'scale_mnist', 'data_source': 'x', 'generator': 'reference',
               'rescale': {}, 'input_norm': 'reference', 'split_sizes': {'train': 10}},
      'equivariance': {'num_images': 8, 'actions': {l: 'spatial' for l in layers},
                       'layerwise': {f: {l: delta_logits * g for l in layers}
                                     for f, g in grow.items()}}}
  with open(os.path.join(path, 'eval', 'results.json'), 'w') as f:
    json.dump(results, f)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump({'num_epochs': 3, 'batch_size': 128, 'learning_rate': 0.01,
               'lr_decay_factor': 0.1, 'lr_decay_epochs': [1, 2]}, f)
  with open(os.path.join(path, 'train_seconds'), 'w') as f:
    f.write('60\n30\n')  # two sessions
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    for rate in (10.0, 1280.0, 1280.0):  # the first log includes the compile
      f.write(json.dumps({'step': 1, 'train/examples_per_s': rate}) + '\n')


def test_verdicts_need_separated_intervals():
  assert records.verdict(True, [0.9, 0.91], [0.8, 0.81]) == 'confirmed'
  assert records.verdict(False, [0.9, 0.91], [0.8, 0.81]) == 'refuted'
  assert records.verdict(True, [0.9, 0.7], [0.8, 0.81]) == 'inconclusive'
  assert records.verdict(True, [0.9], [0.8, 0.81]) == 'inconclusive (n < 2)'
  assert records.compare([1.0], []) == ('not measured', '-')
  assert records.compare([1.0], [0.5, 0.6]) == ('higher', 'n < 2, no interval')
  assert records.stats([1.0, None, float('nan'), 3.0]) == (2.0, pytest.approx(1.41421356), 2)


def test_hyperparameter_effect_needs_two_runs_and_separated_extremes():
  effect = study.hyperparameter_effect
  assert effect('acc', {'1': [0.90, 0.91], '2': [0.95, 0.96], '3': [0.93, 0.92]}, pct=True) == (
      'acc: **matters**: highest at 2 (95.5 ± 0.71 (n=2)), lowest at 1 '
      '(90.5 ± 0.71 (n=2)), intervals do not overlap.')
  assert '**within the noise**' in effect('acc', {'1': [0.90, 0.96], '2': [0.95, 0.96]})
  assert effect('acc', {'1': [0.9, 0.9], '2': [0.95], '3': []}) == \
      'acc: no verdict yet (n < 2 at 2, 3).'
  assert effect('acc', {'1': [0.9, 0.9]}) == 'acc: one value only, nothing to compare.'
  # One realization takes the spread of the default value's realizations (here 0.01).
  one = {'1': [0.80], '2': [0.90, 0.91, 0.89], '3': [0.905]}
  assert effect('acc', one, pct=True, default='2') == (
      'acc: **matters**: highest at 3 (90.5 (n=1)), lowest at 1 (80 (n=1)), intervals do not '
      "overlap (n=1 at 3, 1: ± 1, the spread of the default 2's 3 realizations).")
  assert '**within the noise**' in effect('acc', {**one, '1': [0.885]}, default='2')
  # Negative controls: no default, a default measured once, a value not measured.
  assert effect('acc', one) == 'acc: no verdict yet (n < 2 at 1, 3).'
  assert effect('acc', {**one, '2': [0.9]}, default='2') == 'acc: no verdict yet (n < 2 at 1, 2, 3).'
  assert effect('acc', {**one, '4': []}, default='2') == 'acc: no verdict yet (n < 2 at 1, 3, 4).'
  assert effect('acc', {'1': [], '2': []}) == 'acc: not measured.'


def test_depth_lines_name_the_largest_rise_and_never_call_a_fall_one(tmp_path):
  from scalenet import study_claims
  layers = ('block0.conv', 'block0', 'logits')
  for k in range(2):
    _write_run(str(tmp_path / 'rise' / 'cnn' / f'r{k}'), test_acc=0.9, delta_logits=0.1, layers=layers)
  rise = records.load_runs(str(tmp_path / 'rise'))
  for k in range(2):  # Delta only falls through depth: block0 0.4, then logits 0.1.
    path = tmp_path / 'fall' / 'cnn' / f'r{k}'
    _write_run(str(path), test_acc=0.9, delta_logits=0.1, layers=layers[1:])
    res = json.loads((path / 'eval' / 'results.json').read_text())
    res['equivariance']['layerwise']['0.5000'] = {'block0': 0.4, 'logits': 0.1}
    (path / 'eval' / 'results.json').write_text(json.dumps(res))
  fall = records.load_runs(str(tmp_path / 'fall'))
  for run in rise:
    run['results']['equivariance']['layerwise']['0.5000'] = {
        'block0.conv': 0.1, 'block0': 0.5, 'logits': 0.2}
  lines = study_claims.depth_lines({'up': rise, 'down': fall})
  assert lines[0] == ('- up: block0.conv 0.1 -> block0 0.5 -> logits 0.2. '
                      'Largest rise: block0.conv -> block0 (+0.4).')
  assert lines[1] == '- down: block0 0.4 -> logits 0.1. No rise: Delta falls at every step measured.'


def test_report_collects_runs_and_answers_the_claims(tmp_path):
  root, runs, out = tmp_path / 'runs', tmp_path / 'copied', tmp_path / 'report'
  out.mkdir()
  for k, (cnn_acc, dcn_acc) in enumerate(((0.90, 0.95), (0.91, 0.96))):
    _write_run(root / 'A' / 'cnn' / f'r{k}', test_acc=cnn_acc, delta_logits=0.5)
    _write_run(root / 'A' / 'dcn' / f'r{k}', test_acc=dcn_acc, delta_logits=0.25)
    _write_run(root / 'A' / 'dss_v1' / f'r{k}', test_acc=0.97, delta_logits=0.1)
    _write_run(root / 'C' / 'dss_v2' / f'r{k}', test_acc=0.97 + 0.001 * k, delta_logits=0.1)
    _write_run(root / 'C' / 'deform_dss' / f'r{k}', test_acc=0.98 + 0.001 * k, delta_logits=0.1)
    (root / 'C' / 'dss_v1').mkdir(parents=True, exist_ok=True)
    os.symlink(f'../../A/dss_v1/r{k}', root / 'C' / 'dss_v1' / f'r{k}')
    # B: one axis run (learning rate 0.003 worse than the default, A's run).
    _write_run(root / 'B' / 'dss_v1' / f'r{k}' / 'learning_rate=0.003', test_acc=0.90 + 0.001 * k,
               delta_logits=0.1)
    os.symlink(f'../../../A/dss_v1/r{k}', root / 'B' / 'dss_v1' / f'r{k}' / 'base')
  # B for deform_dss, one realization: its default point is C's two runs.
  for lr, lr_acc in (('0.003', 0.90), ('0.03', 0.95)):
    _write_run(root / 'B' / 'deform_dss' / 'r0' / f'learning_rate={lr}', test_acc=lr_acc,
               delta_logits=0.1)
  os.symlink('../../../C/deform_dss/r0', root / 'B' / 'deform_dss' / 'r0' / 'base')
  os.makedirs(root / 'A' / 'sscnn' / 'r0')  # started, never evaluated: not collected
  with open(root / 'A' / 'sscnn' / 'r0' / 'config.json', 'w') as f:
    f.write('{}')
  assert records.collect(str(root), str(runs)) == 14  # links are SAME_AS, not counted
  assert (runs / 'C' / 'dss_v1' / 'r0' / 'SAME_AS').read_text().strip() == 'A/dss_v1/r0'
  assert not (runs / 'A' / 'sscnn').exists()
  assert not any(p.name == 'checkpoints' for p in runs.rglob('*'))
  text = study.render(str(runs), str(out / 'study.md'))
  assert (out / 'study_A.png').stat().st_size > 0
  assert 'A sscnn' in text.split('**Not run yet**')[1].split('\n')[0]
  claim_i = text.split('### Claim (i)')[1].split('###')[0]
  assert 'dcn 95.5 ± 0.71 (n=2) % vs cnn 90.5 ± 0.71 (n=2) %: confirmed' in claim_i
  assert 'Delta(1/2) at logits: dcn 0.25 ± 0 (n=2) vs cnn 0.5 ± 0 (n=2): confirmed' in claim_i
  assert 'Verdict: confirmed.' in text.split('### Claim (ii)')[1].split('###')[0]
  # C's dss_v1 is A's run, read through SAME_AS; v2 and v1 overlap.
  claim_v = text.split('### Claim (v)')[1].split('##')[0]
  assert 'dss_v2 97.05 ± 0.071 (n=2) % vs dss_v1 97 ± 0 (n=2) %: **inconclusive**' in claim_v
  # deform_dss above dss_v1 at every scale: helps at the small change (0.909),
  # and does not hurt at the large ones (1/3, 2): the claim is refuted.
  claim_iv = text.split('### Claim (iv)')[1].split('###')[0]
  assert ('helps at small changes: confirmed; hurts at large ones: refuted (2 of 2 scales '
          'refute, none confirms). **Verdict: refuted.**') in claim_iv
  lr = text.split('**learning_rate**')[1].split('**model.')[0]
  assert '| 0.003 | 90.05 ± 0.071 (n=2) |' in lr and '| 0.01 | 97 ± 0 (n=2) |' in lr
  assert 'test accuracy (%): no verdict yet (n < 2 at 0.03)' in lr
  deform = text.split("### deform_dss (1 realization(s): r0; the default point: C's 2 run(s))")[1]
  lr = deform.split('**learning_rate**')[1].split('**model.')[0]
  assert '| 0.003 | 90 (n=1) |' in lr and '| 0.01 | 98.05 ± 0.071 (n=2) |' in lr
  assert ('test accuracy (%): **matters**: highest at 0.01 (98.05 ± 0.071 (n=2)), lowest at '
          "0.003 (90 (n=1)), intervals do not overlap (n=1 at 0.003: ± 0.071, the spread of the "
          "default 0.01's 2 realizations).") in lr
  # Times: seconds summed over sessions; step time from the logged rate.
  assert '| cnn | 100 | 3 | 1.5 | - | 2 |' in text


def _dry_run(root, *args, **env):
  env = {**os.environ, 'ROOT': str(root), 'PYTHON': sys.executable, 'DATA_SOURCE': 'mnist_5k',
         **env}
  return subprocess.run(['bash', SCRIPT, '--dry-run', *args], env=env, capture_output=True,
                        text=True, timeout=60)


def test_run_script_plans_every_experiment_once(tmp_path):
  proc = _dry_run(tmp_path, '--config.batch_size=64', EPOCHS='6', REALIZATIONS='0 1')
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert 'data mnist_5k, 6 epochs, realizations 0 1' in lines[0]
  train = [l for l in lines if ' train.py ' in l]
  # A: 6 models, C: 5 (its dss_v1 is A's run), 2 realizations each.
  assert len(train) == 22
  assert not any('/C/dss_v1/' in l for l in train)
  for l in train:
    assert '--config.lr_decay_epochs=\\(2\\,\\ 4\\)' in l and '--config.batch_size=64' in l
    assert '--config.generator=reference' in l and '--config.data_source=mnist_5k' in l
  sweeps = [l for l in lines if ' sweep.py ' in l]
  # Axis by axis (5 axes), each to all its realizations: dss_v1 r0, r1; deform_dss r0.
  assert len(sweeps) == 15
  assert sum('sweep_dss_mnist.py:deform_dss' in l for l in sweeps) == 5
  axes = [l.split('only=')[1].split()[0] for l in sweeps[:10]]
  assert axes[0::2] == axes[1::2] == ['model.base', 'model.channels', 'learning_rate',
                                      'model.interaction', 'model.num_scales']
  assert ['/B/dss_v1/r0 ' in l for l in sweeps[:2]] == [True, False]
  assert 'scalenet.study' in lines[-1]
  assert not os.listdir(tmp_path)  # a dry run creates nothing


def test_run_script_runs_c_alone_on_a_root_without_a(tmp_path):
  """Not a dry run: train.py and evaluate.py are stubbed (a PYTHON that
  skips them), so the script's own steps run: C's dss_v1 is linked to A's
  run even before A has one, and C's model is trained then evaluated."""
  stub = tmp_path / 'python'
  stub.write_text('#!/usr/bin/env bash\n'
                  'case "$1" in train.py|evaluate.py) exit 0 ;; esac\n'
                  f'exec {sys.executable} "$@"\n')
  stub.chmod(0o755)
  root = tmp_path / 'study'
  env = {**os.environ, 'ROOT': str(root), 'PYTHON': str(stub), 'DATA_SOURCE': 'mnist_5k',
         'EXPERIMENTS': 'C', 'MODELS': 'dss_v2', 'REALIZATIONS': '0', 'JOBS': '1',
         'RENDER': '0'}
  proc = subprocess.run(['bash', SCRIPT], env=env, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  assert os.readlink(root / 'C' / 'dss_v1' / 'r0') == os.path.join('..', '..', 'A', 'dss_v1',
                                                                    'r0')
  run = root / 'C' / 'dss_v2' / 'r0'
  assert (run / 'trained').exists() and (run / 'eval_seconds').exists()


def test_run_script_refuses_bad_settings(tmp_path):
  bad_axis = _dry_run(tmp_path, EXPERIMENTS='B', SWEEP_AXES='learning_rate model.bse')
  assert bad_axis.returncode == 2 and "only=['model.bse']" in bad_axis.stderr
  assert _dry_run(tmp_path, DATA_SOURCE=str(tmp_path / 'nope')).returncode == 2
  assert _dry_run(tmp_path, EXPERIMENTS='A D').returncode == 2
  assert _dry_run(tmp_path, EPOCHS='0').returncode == 2
  only = _dry_run(tmp_path, MODELS='cnn', EXPERIMENTS='A', REALIZATIONS='0')
  assert sum(' train.py ' in l for l in only.stdout.splitlines()) == 1


def test_run_script_runs_one_model_s_sweep_when_the_other_s_realizations_are_empty(tmp_path):
  deform = _dry_run(tmp_path, EXPERIMENTS='B', SWEEP_REALIZATIONS='', SWEEP_AXES='learning_rate')
  sweeps = [l for l in deform.stdout.splitlines() if ' sweep.py ' in l]
  assert deform.returncode == 0 and len(sweeps) == 1 and 'mnist.py:deform_dss' in sweeps[0]
  dss = _dry_run(tmp_path, EXPERIMENTS='B', DEFORM_SWEEP_REALIZATIONS='', SWEEP_AXES='learning_rate')
  sweeps = [l for l in dss.stdout.splitlines() if ' sweep.py ' in l]
  assert len(sweeps) == 2 and not any('deform_dss' in l for l in sweeps)


def _write_fake_cifar(root, n_train=20, n_test=20):
  """CIFAR-10 binary batches: one label byte then 3072 pixel bytes per record."""
  rng = np.random.default_rng(0)
  os.makedirs(root)
  names = [f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']
  for i, name in enumerate(names):
    n = n_test if name.startswith('test') else n_train
    records = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))],
                             axis=1).astype(np.uint8)
    (root / name).write_bytes(records.tobytes())


def test_scale_cifar10_config_runs_on_cifar_files(tmp_path):
  # The study's section 4.1 setting: the config trains and evaluates given the
  # CIFAR-10 files (here a tiny fake set), with the ResNet shrunk (':tiny').
  _write_fake_cifar(tmp_path / 'cifar')
  config = resnet50_scale_cifar10.get_config('tiny')
  config.data_source, config.data_dir = str(tmp_path / 'cifar'), str(tmp_path / 'tfds')
  config.progress_bar, config.halt_after_steps = False, 2
  config_lib.validate(config)
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  res = evaluate.evaluate(config, str(tmp_path / 'run'))
  assert res['data']['image_shape'] == [32, 32, 3] and res['step'] == 2
  assert set(res['accuracy_by_split']) >= {'test', 'test_s0500'}
  # The full config reads the same files and its ResNet-50 takes their images.
  full = resnet50_scale_cifar10.get_config()
  full.data_source, full.data_dir = config.data_source, config.data_dir
  config_lib.validate(full)
  data = pipeline.get_datasets(full, progress=False)
  model = nnx.eval_shape(lambda: models.get_model(full.model_name, rngs=nnx.Rngs(0),
                                                  **full.model))
  out = nnx.eval_shape(lambda m, x: m(x), model,
                       jax.ShapeDtypeStruct((2, *data.image_shape), jnp.float32))
  assert out.shape == (2, 10)
