import json
import os

import pytest

from scalenet import equivariance_report


def test_report_writes_table_plot_and_resumes_from_its_cache(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a user's working directory
  args = ['--models', 'cnn', '--seeds', '2', '--num-images', '4']
  equivariance_report.main(args)
  out = tmp_path / 'equivariance_report'  # the default: not the committed results/
  assert sorted(os.listdir(tmp_path)) == ['equivariance_report']
  text = (out / 'equivariance.md').read_text()
  assert '| cnn | none |' in text and '### cnn' in text and '| block0.conv | spatial |' in text
  assert (out / 'equivariance.png').stat().st_size > 1000
  saved = json.loads((out / 'equivariance.json').read_text())
  assert len(saved['settings'][0]['models']['cnn']['factors']['0.5000']['logits']) == 2

  def fail(*a, **k):
    raise AssertionError('a cached model was measured again')
  monkeypatch.setattr(equivariance_report, 'measure', fail)
  equivariance_report.main(args)  # reads the cache
  with pytest.raises(AssertionError, match='measured again'):
    equivariance_report.main(['--models', 'cnn', '--seeds', '3', '--num-images', '4'])


def test_another_setting_keeps_the_cached_ones_and_notes_are_kept(tmp_path):
  notes = tmp_path / 'notes.md'
  notes.write_text('Some notes.\n')
  base = ['--models', 'cnn', '--num-images', '4', '--out-dir', str(tmp_path / 'r'),
          '--notes', str(notes)]
  equivariance_report.main(base + ['--seeds', '1'])
  equivariance_report.main(base + ['--seeds', '2'])
  saved = json.loads((tmp_path / 'r' / 'equivariance.json').read_text())
  assert [e['setting']['seeds'] for e in saved['settings']] == [1, 2]
  text = (tmp_path / 'r' / 'equivariance.md').read_text()
  assert text.endswith('## Notes\n\nSome notes.\n') and '--seeds 2' in text
  with pytest.raises(SystemExit):
    equivariance_report.main(base[:-1] + [str(tmp_path / 'missing.md')])


def test_report_rejects_unknown_models(tmp_path):
  with pytest.raises(SystemExit):
    equivariance_report.main(['--models', 'vit', '--out-dir', str(tmp_path)])
