"""Evaluated runs as records: loaded from run directories, collected, summarised.

`load_runs` reads the reproduction script's layout (<model>/<setting>/r<k>).
For the study's (<experiment>/<model>/r<k>), `collect` copies each evaluated run of `scripts/run_study.sh` (results.json,
config.json, metrics.jsonl and times, no checkpoints; a run that is another's,
a symlink, becomes a SAME_AS file naming it) into results/study_runs/;
`realizations` loads them back. Figures are mean +- sample std over
realizations; `verdict` decides a claim from whether the two sides'
intervals overlap.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil

import numpy as np

def factor_key(factor: float) -> str:
  """The key of scale factor `factor` in results.json: '0.5000' (`tables` re-exports it)."""
  return f'{float(factor):.4f}'


# Directory names of the reproduction script's settings: the published table's
# plain and '+' (TABLE_SETTINGS), and Rahman & Yeh's multi-resolution training.
TABLE_SETTINGS = ('plain', 'plus')
SETTINGS = TABLE_SETTINGS + ('multires',)
FILES = ('eval/results.json', 'config.json', 'metrics.jsonl', 'train_seconds', 'eval_seconds')


# --- The reproduction script's runs. ---

def read_seconds(path: str):
  """The sum of the lines of a time file (one per session), or None if absent."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return sum(float(line) for line in f if line.strip())


def load_runs(root: str) -> list[dict]:
  """Every evaluated run under `root`, as the reproduction script lays them out.

  Layout: <root>/<model>/<setting>/r<k>/eval/results.json, with setting in
  SETTINGS ('plus': trained with the '+' random rescaling; 'multires': with
  configs/sesn_table.py's multi-resolution training); the older
  <root>/<model>/r<k>/ counts as 'plain'. Files `train_seconds` and
  `eval_seconds` in the run directory (one line per session) give the
  times; its `config.json`, where kept, the number of epochs.

  Returns:
    [{'model', 'setting', 'realization', 'results', 'train_seconds',
      'eval_seconds', 'epochs', 'dir'}].

  Raises:
    FileNotFoundError: no evaluated run under `root`.
  """
  paths = sorted(set(glob.glob(os.path.join(root, '*', 'r*', 'eval', 'results.json')))
                 | set(glob.glob(os.path.join(root, '*', '*', 'r*', 'eval', 'results.json'))))
  runs = []
  for path in paths:
    run_dir = os.path.dirname(os.path.dirname(path))
    parent = os.path.dirname(run_dir)
    setting = os.path.basename(parent)
    if setting not in SETTINGS:
      setting = 'plain'
    else:
      parent = os.path.dirname(parent)
    with open(path) as f:
      res = json.load(f)
    epochs = None
    if os.path.exists(os.path.join(run_dir, 'config.json')):
      with open(os.path.join(run_dir, 'config.json')) as f:
        epochs = json.load(f).get('num_epochs')
    runs.append({'model': res.get('model_name') or os.path.basename(parent),
                 'setting': setting, 'realization': os.path.basename(run_dir),
                 'results': res, 'dir': run_dir, 'epochs': epochs,
                 'train_seconds': read_seconds(os.path.join(run_dir, 'train_seconds')),
                 'eval_seconds': read_seconds(os.path.join(run_dir, 'eval_seconds'))})
  if not runs:
    raise FileNotFoundError(f'no evaluated runs (<model>/[plain|plus/]r<k>/eval/results.json) '
                            f'under {root!r}.')
  return runs


# --- Collecting the study's runs. ---

def _run_dirs(root: str):
  """(relative path, absolute path) of every run directory under root."""
  for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
    for d in list(dirnames):
      full = os.path.join(dirpath, d)
      if os.path.islink(full):
        dirnames.remove(d)
        yield os.path.relpath(full, root), full
    if 'config.json' in filenames:
      yield os.path.relpath(dirpath, root), dirpath


def collect(root: str, out: str) -> int:
  """Copies every evaluated run's record from `root` into `out`; returns how many."""
  count = 0
  for rel, path in _run_dirs(root):
    dest = os.path.join(out, rel)
    if os.path.islink(path):
      target = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
      os.makedirs(dest, exist_ok=True)
      with open(os.path.join(dest, 'SAME_AS'), 'w') as f:
        f.write(target + '\n')
      continue
    if not os.path.exists(os.path.join(path, 'eval', 'results.json')):
      continue
    for name in FILES:
      src = os.path.join(path, name)
      if os.path.exists(src):
        os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
        shutil.copyfile(src, os.path.join(dest, name))
    count += 1
  return count


# --- Loading them. ---

def step_seconds(metrics_path: str, batch_size: int):
  """Median seconds per training step, from the logged examples/s (first log left out)."""
  if not os.path.exists(metrics_path):
    return None
  rates = []
  with open(metrics_path) as f:
    for line in f:
      if line.strip():
        rate = json.loads(line).get('train/examples_per_s')
        if rate:
          rates.append(rate)
  rates = rates[1:] or rates  # the first includes compilation
  return batch_size / float(np.median(rates)) if rates else None


def load_run(runs: str, rel: str):
  """{'results', 'config', 'train_seconds', 'eval_seconds', 'step_seconds', 'dir'} or None."""
  path = os.path.join(runs, rel)
  same = os.path.join(path, 'SAME_AS')
  if os.path.exists(same):
    with open(same) as f:
      rel = f.read().strip()
    path = os.path.join(runs, rel)
  res = os.path.join(path, 'eval', 'results.json')
  if not os.path.exists(res):
    return None
  with open(res) as f:
    results = json.load(f)
  with open(os.path.join(path, 'config.json')) as f:
    config = json.load(f)
  return {'results': results, 'config': config, 'dir': rel,
          'train_seconds': read_seconds(os.path.join(path, 'train_seconds')),
          'eval_seconds': read_seconds(os.path.join(path, 'eval_seconds')),
          'step_seconds': step_seconds(os.path.join(path, 'metrics.jsonl'),
                                        config.get('batch_size', 128))}


def realizations(runs: str, *parts) -> list:
  """Every evaluated run under runs/<parts...>/r<k>, in order of k."""
  base = os.path.join(runs, *parts)
  if not os.path.isdir(base):
    return []
  out = []
  for d in sorted(os.listdir(base)):
    if d.startswith('r') and d[1:].isdigit():
      run = load_run(runs, os.path.join(*parts, d))
      if run:
        out.append(run)
  return out


# --- Statistics. ---

def stats(values):
  """(mean, sample std or 0, n) of the finite values; (nan, nan, 0) if none."""
  v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
  if not len(v):
    return math.nan, math.nan, 0
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def fmt(values, digits: int = 4, pct: bool = False) -> str:
  m, s, n = stats(values)
  if not n:
    return '-'
  k = 100.0 if pct else 1.0
  if n == 1:
    return f'{m * k:.{digits}g} (n=1)'
  return f'{m * k:.{digits}g} ± {s * k:.2g} (n={n})'


def compare(a, b) -> tuple[str, str]:
  """('higher' | 'lower', whether the mean +- std intervals overlap); with
  one realization on a side there is no interval to compare."""
  (ma, sa, na), (mb, sb, nb) = stats(a), stats(b)
  if not na or not nb:
    return 'not measured', '-'
  order = 'higher' if ma > mb else 'lower'
  if min(na, nb) < 2:
    return order, 'n < 2, no interval'
  overlap = (ma - sa <= mb + sb) and (mb - sb <= ma + sa)
  return order, 'intervals overlap' if overlap else 'intervals do not overlap'


def verdict(holds: bool, a, b) -> str:
  """'confirmed' / 'refuted' when the intervals separate, else 'inconclusive'.

  Needs n >= 2 on both sides: one realization has no spread to compare.
  """
  if min(stats(a)[2], stats(b)[2]) < 2:
    return 'inconclusive (n < 2)'
  order, overlap = compare(a, b)
  if overlap != 'intervals do not overlap':
    return 'inconclusive'
  return 'confirmed' if holds else 'refuted'


# --- Reading a run's results. ---

def acc(runs, split='test'):
  return [r['results']['accuracy_by_split'].get(split) for r in runs]


def acc_at(runs, factor):
  return [r['results']['accuracy_vs_scale'].get(factor_key(factor)) for r in runs]


def delta(runs, factor_k: str, layer: str):
  return [r['results']['equivariance']['layerwise'].get(factor_k, {}).get(layer) for r in runs]


def last_block_name(layers) -> str | None:
  """The last 'block{i}' (a block's output, not its '.conv') among `layers`, or None."""
  blocks = [k for k in layers if k.startswith('block') and not k.endswith('.conv')]
  return blocks[-1] if blocks else None


def last_block(runs) -> str:
  return last_block_name(runs[0]['results']['equivariance']['actions'])


def factors_of(runs) -> list[str]:
  keys = set()
  for r in runs:
    keys |= set(r['results']['equivariance']['layerwise'])
  return sorted(keys, key=float)


def scale_factors(runs) -> list[str]:
  return sorted(runs[0]['results']['accuracy_vs_scale'], key=float)


# --- Report sections. ---
