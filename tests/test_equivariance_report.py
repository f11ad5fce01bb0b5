import json
import os

import pytest

from scalenet import equivariance_report


def test_report_writes_table_plot_and_resumes_from_its_cache(tmp_path, monkeypatch):
  out, png, cache = (str(tmp_path / n) for n in ('eq.md', 'eq.png', 'eq.json'))
  args = ['--models', 'cnn', '--seeds', '2', '--num-images', '4', '--out', out, '--png', png,
          '--cache', cache]
  equivariance_report.main(args)
  text = open(out).read()
  assert '| cnn | none |' in text and '### cnn' in text and '| block0.conv | spatial |' in text
  assert os.path.getsize(png) > 1000
  saved = json.load(open(cache))
  assert len(saved['models']['cnn']['factors']['0.5000']['logits']) == 2  # one per seed

  def fail(*a, **k):
    raise AssertionError('a cached model was measured again')
  monkeypatch.setattr(equivariance_report, 'measure', fail)
  equivariance_report.main(args)  # reads the cache
  with pytest.raises(AssertionError, match='measured again'):
    equivariance_report.main(args[:5] + ['3'] + args[6:])  # another setting: no reuse


def test_report_rejects_unknown_models(tmp_path):
  with pytest.raises(SystemExit):
    equivariance_report.main(['--models', 'vit', '--cache', str(tmp_path / 'c.json')])
