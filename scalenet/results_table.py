"""The reproduction table: test error mean +- std over realizations, per model.

Reads <root>/<model>/r<realization>/eval/results.json (written by evaluate.py)
and <root>/<model>/r<realization>/train_seconds (written by
scripts/reproduce_mnist_scale.sh), and renders one markdown table.

  python -m scalenet.results_table workdirs/repro --out results/mnist_scale.md
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

DELTA_FACTORS = ('0.5000', '2.0000')


def load_runs(root: str) -> dict:
  """{model: [per-realization dict]} for every evaluated run under `root`."""
  runs = {}
  for path in sorted(glob.glob(os.path.join(root, '*', 'r*', 'eval', 'results.json'))):
    run_dir = os.path.dirname(os.path.dirname(path))
    with open(path) as f:
      res = json.load(f)
    timing = os.path.join(run_dir, 'train_seconds')
    seconds = None
    if os.path.exists(timing):
      with open(timing) as f:
        seconds = sum(float(line) for line in f if line.strip())
    res['train_seconds'] = seconds
    res['realization'] = os.path.basename(run_dir)
    runs.setdefault(os.path.basename(os.path.dirname(run_dir)), []).append(res)
  if not runs:
    raise FileNotFoundError(f'no evaluated runs (*/r*/eval/results.json) under {root!r}.')
  return runs


def _mean_std(values) -> str:
  values = np.asarray(values, np.float64)
  if len(values) == 1:
    return f'{values[0]:.2f}'
  return f'{values.mean():.2f} +- {values.std(ddof=1):.2f}'


def _mean_delta(rs, kind: str, factor: str) -> str:
  vals = [r['equivariance'][kind].get(factor) for r in rs]
  return '-' if None in vals else f'{np.mean(vals):.3g}'


def render(runs: dict) -> str:
  """Markdown: one row per model, best test error first.

  Delta columns: equivariance error of the features (spatial rescale as the
  output transform) and of the logits (invariance), mean over realizations.
  """
  lines = ['| model | runs | steps | test error % | params | Delta feat 0.5 | Delta feat 2 '
           '| Delta logits 0.5 | Delta logits 2 | train time / run |',
           '|---|---|---|---|---|---|---|---|---|---|']
  order = sorted(runs, key=lambda m: np.mean([r['test_error'] for r in runs[m]]))
  for model in order:
    rs = runs[model]
    deltas = [_mean_delta(rs, kind, f) for kind in ('features', 'logits') for f in DELTA_FACTORS]
    secs = [r['train_seconds'] for r in rs if r['train_seconds'] is not None]
    time = f'{np.mean(secs) / 60:.1f} min' if secs else '-'
    lines.append(
        f"| {model} | {','.join(r['realization'] for r in rs)} | {rs[0]['step']} | "
        f"{_mean_std([100 * r['test_error'] for r in rs])} | {rs[0]['params']:,} | "
        + ' | '.join(deltas) + f' | {time} |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('root', help='directory holding <model>/r<realization>/ runs')
  parser.add_argument('--out', help='markdown file to write (default: print only)')
  parser.add_argument('--header', default='', help='text put above the table')
  args = parser.parse_args(argv)
  table = render(load_runs(args.root))
  text = (args.header.rstrip() + '\n\n' if args.header else '') + table
  if args.out:
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as f:
      f.write(text)
  print(text, end='')


if __name__ == '__main__':
  main()
