import json
import os
import subprocess
import sys

import pytest

from scalenet import records, tables


def _results(model, err, delta=None, params=1234, step=230, data=None):
  res = {'model_name': model, 'test_error': err, 'params': params, 'step': step}
  if data is not None:
    res['data'] = data
  if delta is not None:
    res['equivariance'] = {'layerwise': {
        '0.5000': {'block0.conv': delta, 'block0': 9.0, 'logits': delta / 10},
        '2.0000': {'block0.conv': 2 * delta, 'logits': 3 * delta}}}
  return res


def _write(root, model, setting, r, err, delta=None, seconds=None, epochs=None, **kw):
  run = root / model / setting / f'r{r}' if setting else root / model / f'r{r}'
  (run / 'eval').mkdir(parents=True)
  (run / 'eval' / 'results.json').write_text(json.dumps(_results(model, err, delta, **kw)))
  if seconds is not None:
    (run / 'train_seconds').write_text(f'{seconds}\n{seconds}\n')  # two sessions (a resume)
    (run / 'eval_seconds').write_text(f'{seconds / 2}\n')
  if epochs is not None:
    (run / 'config.json').write_text(json.dumps({'num_epochs': epochs}))


def test_factor_key_is_the_one_scheme():
  assert tables.factor_key(0.5) == '0.5000' and tables.factor_key(1 / 3) == '0.3333'
  assert tables.delta(_results('m', 0.1, 0.2), 0.5, 'block0.conv') == 0.2
  assert tables.delta(_results('m', 0.1, 0.2), 1 / 3, 'logits') is None
  assert tables.delta(_results('m', 0.1), 0.5, 'logits') is None  # no equivariance entry


def test_published_layout_means_stds_and_missing_cells(tmp_path):
  _write(tmp_path, 'mnist_ses_28', 'plain', 0, 0.02, 0.1, 30, epochs=60)
  _write(tmp_path, 'mnist_ses_28', 'plain', 1, 0.04, 0.3, 90, epochs=60)
  _write(tmp_path, 'mnist_ses_28', 'plus', 0, 0.015, 0.5)
  _write(tmp_path, 'mnist_ses_56', 'plain', 0, 0.018, 7.0)
  _write(tmp_path, 'mnist_cnn_28', 'plain', 0, 0.05, 1.0, params=999)
  _write(tmp_path, 'dss_v1', None, 0, 0.035)  # the older layout: plain, no Delta
  lines = tables.reproduction_markdown(records.load_runs(str(tmp_path))).splitlines()
  assert lines[0] == ('| model | params | 28 | 28+ | 56 | 56+ | Delta block0.conv 0.5 '
                      '| Delta block0.conv 2 | Delta logits 0.5 | Delta logits 2 |')
  # Delta columns: the plain 28x28 runs only, mean over realizations.
  assert lines[2] == ('| mnist_ses | 1,234 | 3.00 ± 1.41 (n=2, 60 ep) | 1.50 (n=1) | 1.80 (n=1) | - '
                      '| 0.2 | 0.4 | 0.02 | 0.6 |')
  assert lines[3] == '| dss_v1 | 1,234 | 3.50 (n=1) | - | - | - | - | - | - | - |'
  assert lines[4] == '| mnist_cnn | 999 | 5.00 (n=1) | - | - | - | 1 | 2 | 0.1 | 3 |'
  runs = '\n'.join(lines)
  # One evaluated step per realization, in their order (equal steps not merged).
  assert '| mnist_ses_28 | plain | r0,r1 | 60 | 230,230 | 2.0 min | 0.5 min |' in runs
  assert '| mnist_ses_28 | plus | r0 | - | 230 | - | - |' in runs


def test_delta_column_is_dash_unless_every_realization_has_it(tmp_path):
  _write(tmp_path, 'mnist_cnn_28', 'plain', 0, 0.05, 1.0)
  _write(tmp_path, 'mnist_cnn_28', 'plain', 1, 0.05)
  row = tables.published_table(records.load_runs(str(tmp_path))).splitlines()[2]
  assert row.endswith('| - | - | - | - |')


def test_run_and_comparison_markdown_share_the_keys():
  res = _results('mnist_cnn_28', 0.0312, 0.25)
  res.update(accuracy_by_split={'test': 0.9688, 'test_s0500': 0.9},
             accuracy_vs_scale={'0.5000': 0.9, '1.0000': 0.9688})
  res['equivariance'].update(actions={'block0.conv': 'spatial', 'logits': 'invariant'},
                             num_images=32, rescale={'method': 'cubic', 'antialias': False},
                             skipped={'0.3333': 'not a power of the ratio'})
  md = tables.run_markdown(res)
  assert '| test_s0500 | 0.9000 | 10.00 |' in md
  assert '| 0.500 | 0.9000 |' in md
  assert '| block0.conv | spatial | 0.25 | 0.5 |' in md
  assert '| block0 | - | 9 | - |' in md  # measured at 0.5 only
  assert 's = 0.3333 not measured: not a power of the ratio' in md
  table = tables.comparison_markdown({'a (w1)': res, 'b (w2)': _results('cnn', 0.1)})
  assert table.splitlines()[2] == '| a (w1) | 1,234 | 230 | 3.12 | 0.25 | 0.5 | 0.025 | 0.75 |'
  assert table.splitlines()[3] == '| b (w2) | 1,234 | 230 | 10.00 | - | - | - | - |'


def test_no_runs_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no evaluated runs'):
    records.load_runs(str(tmp_path))


def test_cli_writes_the_table(tmp_path, capsys):
  _write(tmp_path / 'root', 'mnist_cnn_28', 'plain', 0, 0.05, 1.0)
  out = tmp_path / 'results' / 'mnist_scale.md'
  tables.main([str(tmp_path / 'root'), '--out', str(out), '--header', '# Title'])
  text = out.read_text()
  assert text.startswith('# Title\n\n| model | params | 28 |') and text == capsys.readouterr().out


def test_runs_of_several_roots_form_one_table_and_say_where_they_came_from(tmp_path, capsys):
  data = {'dataset': 'scale_mnist', 'generator': 'default', 'image_size': 28}
  _write(tmp_path / 'gpu', 'mnist_cnn_28', 'plain', 0, 0.05, seconds=15, data=data)
  _write(tmp_path / 'gpu', 'mnist_cnn_28', 'plain', 1, 0.07, seconds=15, data=data)
  _write(tmp_path / 'cpu', 'mnist_cnn_28', 'plain', 2, 0.03, seconds=300, data=data)
  tables.main([str(tmp_path / 'gpu'), str(tmp_path / 'cpu')])
  text = capsys.readouterr().out
  assert '| mnist_cnn | 1,234 | 5.00 ± 2.00 (n=3) |' in text
  # Training time per root (each run wrote two sessions).
  assert (f"| r0,r1,r2 | - | 230,230,230 | 0.5 min, 10.0 min | 0.1 min, 2.5 min | "
          f"{tmp_path / 'gpu'} (r0,r1), "
          f"{tmp_path / 'cpu'} (r2) |") in text


def test_runs_of_different_data_protocols_are_refused(tmp_path):
  data = {'dataset': 'scale_mnist', 'generator': 'default', 'image_size': 28,
          'rescale': {'method': 'linear', 'antialias': True}}
  _write(tmp_path, 'mnist_cnn_28', 'plain', 0, 0.05, data=data)
  _write(tmp_path, 'mnist_cnn_28', 'plain', 1, 0.05,
         data={**data, 'rescale': {'method': 'cubic', 'antialias': False}})
  with pytest.raises(ValueError, match='data.rescale'):
    tables.reproduction_markdown(records.load_runs(str(tmp_path)))
  # Same protocol, key order aside: accepted.
  _write(tmp_path, 'mnist_cnn_56', 'plain', 0, 0.05,
         data={**data, 'rescale': {'antialias': True, 'method': 'linear'}})
  tables.check_one_protocol([r for r in records.load_runs(str(tmp_path))
                             if r['realization'] == 'r0'])


def test_one_source_read_from_two_paths_is_one_protocol(tmp_path):
  data = {'dataset': 'scale_mnist', 'generator': 'reference', 'image_size': 28,
          'source_identity': 'mnist-c9a532ad7123', 'data_source': '../shared/data/mnist'}
  _write(tmp_path, 'mnist_cnn_28', 'plain', 0, 0.05, data=data)
  _write(tmp_path, 'mnist_cnn_28', 'plain', 1, 0.05,
         data={**data, 'data_source': '/work/shared/data/mnist'})
  tables.check_one_protocol(records.load_runs(str(tmp_path)))
  # Other files (another content hash) under the same path: refused.
  _write(tmp_path, 'mnist_cnn_28', 'plain', 2, 0.05,
         data={**data, 'source_identity': 'mnist-0123456789ab'})
  with pytest.raises(ValueError, match='data.source_identity'):
    tables.check_one_protocol(records.load_runs(str(tmp_path)))


# --- scripts/reproduce_mnist_scale.sh: which runs it starts (a dry run, no training). ---

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'scripts',
                      'reproduce_mnist_scale.sh')


def _dry_run(root, *args, **env):
  env = {**os.environ, 'ROOT': str(root), 'PYTHON': sys.executable, **env}
  return subprocess.run(['bash', SCRIPT, '--dry-run', *args], env=env, capture_output=True,
                        text=True, timeout=60)


def test_reproduction_script_selects_runs_and_resumes(tmp_path):
  done = tmp_path / 'mnist_cnn_28' / 'plain' / 'r0' / 'eval'
  done.mkdir(parents=True)
  (done / 'results.json').write_text('{}')
  trained = tmp_path / 'mnist_ses_28' / 'plus' / 'r1'
  trained.mkdir(parents=True)
  (trained / 'trained').write_text('')
  proc = _dry_run(tmp_path, '--config.num_epochs=2', MODELS='mnist_cnn_28 mnist_ses_28',
                  REALIZATIONS='0 1')
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  train = [l for l in lines if ' train.py ' in l]
  evals = [l for l in lines if ' evaluate.py ' in l]
  assert len(train) == 6 and len(evals) == 7  # 8 runs: one done, one trained
  assert '== mnist_cnn_28 plain r0: done, skipped' in lines
  assert not any('mnist_ses_28/plus/r1' in l for l in train)
  for l in train + evals:
    assert '--config.num_epochs=2' in l and 'configs/sesn_table.py:mnist_' in l
    plus = '/plus/' in l
    assert ('--config.augment_scale=\\(0.5\\,\\ 2.0\\)' in l) == plus, l
    r = l.split('--config.realization=')[1][0]
    assert f'/r{r} ' in l and f'--config.seed={r}' in l
  assert ' -m scalenet.tables ' in lines[-1]
  assert not (tmp_path / 'mnist_ses_28' / 'plain').exists()  # a dry run creates nothing


def test_reproduction_script_subsets_and_bad_values(tmp_path):
  proc = _dry_run(tmp_path, MODELS='mnist_cnn_56', REALIZATIONS='3', SETTINGS='plus')
  runs = [l for l in proc.stdout.splitlines() if ' train.py ' in l]
  assert len(runs) == 1 and 'mnist_cnn_56/plus/r3' in runs[0]
  proc = _dry_run(tmp_path, MODELS='mnist_cnn_28 fourier_se_mnist', REALIZATIONS='0',
                  SETTINGS='multires')
  runs = [l for l in proc.stdout.splitlines() if ' train.py ' in l]
  assert len(runs) == 1 and 'fourier_se_mnist/multires/r0' in runs[0]  # cnn has no stack
  assert 'sesn_table.py:fourier_se_mnist\\,multires' in runs[0], runs[0]
  assert _dry_run(tmp_path, MODELS='m', SETTINGS='plain augmented').returncode == 2
  assert _dry_run(tmp_path, MODELS='m', REALIZATIONS='6').returncode == 2


def test_p_variants_are_rows_of_their_own_and_disco_is_a_56_model():
  assert tables.split_model_name('mnist_ses_scalar_28p') == ('mnist_ses_scalar (p)', 28)
  assert tables.split_model_name('mnist_ses_vector_56p') == ('mnist_ses_vector (p)', 56)
  assert tables.split_model_name('mnist_ses_vector_56') == ('mnist_ses_vector', 56)
  assert tables.split_model_name('mnist_disco') == ('mnist_disco', 56)
  assert tables.split_model_name('dss_v1') == ('dss_v1', 28)


def test_skipped_notes_name_the_representations():
  lines = tables.skipped_notes({'0.5000': {'block0': 'not a power', 'block1': 'not a power'},
                                '0.3333': 'older format'})
  assert 's = 0.5000: block0, block1 not measured (not a power)' in lines[0]
  assert 'older format' in lines[1]
