import json

import pytest

from scalenet import results_table


def _write(root, model, r, err, delta, seconds):
  run = root / model / f'r{r}'
  (run / 'eval').mkdir(parents=True)
  res = {'test_error': err, 'params': 1234, 'step': 230,
         'equivariance': {'features': {'0.5000': delta, '2.0000': 2 * delta},
                          'logits': {'0.5000': delta / 10, '2.0000': 3 * delta}}}
  (run / 'eval' / 'results.json').write_text(json.dumps(res))
  (run / 'train_seconds').write_text(f'{seconds}\n{seconds}\n')  # two sessions (a resume)


def test_table_means_stds_and_order(tmp_path):
  _write(tmp_path, 'dss_v1', 0, 0.02, 0.1, 30)
  _write(tmp_path, 'dss_v1', 1, 0.04, 0.3, 90)
  _write(tmp_path, 'cnn', 0, 0.05, 1.0, 6)
  lines = results_table.render(results_table.load_runs(str(tmp_path))).splitlines()
  assert lines[2] == '| dss_v1 | r0,r1 | 230 | 3.00 +- 1.41 | 1,234 | 0.2 | 0.4 | 0.02 | 0.6 | 2.0 min |'
  assert lines[3] == '| cnn | r0 | 230 | 5.00 | 1,234 | 1 | 2 | 0.1 | 3 | 0.2 min |'


def test_no_runs_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no evaluated runs'):
    results_table.load_runs(str(tmp_path))
