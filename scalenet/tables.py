"""Markdown tables of evaluated runs: one renderer, one factor-key scheme.

  python -m scalenet.tables workdirs/mnist_scale [more roots] --out results/mnist_scale.md

Three tables, all from results.json files written by `evaluate.evaluate`:
  * `run_markdown(results)`: one run's results.md;
  * `comparison_markdown(runs)`: comparison.md of `evaluate.compare`;
  * `published_table(runs)`: the scale-MNIST table in the layout of Sosnovik
    et al. (2020), Table 2, then the runs behind it (`reproduction_markdown`,
    results/mnist_scale.md; the command line above).

Factor keys: every dict keyed by a scale factor (accuracy_vs_scale,
equivariance.layerwise) uses `factor_key(f)` = f'{f:.4f}' ('0.5000').
Fixed-scale test splits keep their split names (`generate.fixed_split_name`,
'test_s0500'); they are data, not factors.

The parts of results.json read here (missing entries render as '-'):
  model_name, params, step, test_error, accuracy_by_split {split: acc},
  accuracy_vs_scale {factor_key: acc},
  equivariance: {'layerwise': {factor_key: {representation: Delta}},
                 'actions': {representation: str}, 'num_images': int,
                 'rescale': {'method', 'antialias'},
                 'skipped': {factor_key: {representation: why}}}.
The published table's Delta columns read
equivariance.layerwise[factor_key(s)][layer] for layer in DELTA_LAYERS
('block0.conv': the first convolution; 'logits': invariance) and s in
DELTA_FACTORS.

References: Sosnovik, Szmaja, Smeulders, "Scale-Equivariant Steerable
Networks", ICLR 2020 (Table 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re

import numpy as np

from scalenet import records
from scalenet.records import factor_key  # The one factor-key scheme.

DELTA_FACTORS = (0.5, 2.0)
DELTA_LAYERS = ('block0.conv', 'logits')
SIZES = (28, 56)
SETTINGS = records.TABLE_SETTINGS  # The published table's columns; other settings are not in it.
MISSING = '-'




def _get(tree, *path):
  """tree[path[0]][path[1]]..., or None where any level is missing."""
  for key in path:
    if not isinstance(tree, dict) or key not in tree:
      return None
    tree = tree[key]
  return tree


def delta(results: dict, factor: float, layer: str):
  """Delta(s) of representation `layer` at `factor`, or None if not measured."""
  value = _get(results, 'equivariance', 'layerwise', factor_key(factor), layer)
  return None if value is None else float(value)


def _num(value, fmt: str) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return MISSING
  return format(value, fmt)


def _error_pct(results: dict):
  err = results.get('test_error')
  return None if err is None else 100 * float(err)


def _row(cells) -> str:
  return '| ' + ' | '.join(str(c) for c in cells) + ' |'


def _header(names) -> list[str]:
  return [_row(names), '|' + '---|' * len(names)]


def run_markdown(results: dict) -> str:
  """One run's results.md: accuracy per split, accuracy vs scale, Delta by layer."""
  params = results.get('params')
  lines = [f"# {results.get('model_name', '?')} (step {results.get('step', '?')}, "
           f"{_num(params, ',')} params)", '']
  lines += _header(['split', 'accuracy', 'error %'])
  for name, acc in (results.get('accuracy_by_split') or {}).items():
    lines.append(_row([name, _num(acc, '.4f'), _num(None if acc is None else 100 * (1 - acc),
                                                     '.2f')]))
  vs_scale = results.get('accuracy_vs_scale') or {}
  if vs_scale:
    lines += [''] + _header(['scale factor', 'accuracy'])
    for f in sorted(vs_scale, key=float):
      lines.append(_row([f'{float(f):.3f}', _num(vs_scale[f], '.4f')]))
  eq = results.get('equivariance') or {}
  layerwise = eq.get('layerwise') or {}
  if layerwise:
    factors = sorted(layerwise, key=float)
    names = list(dict.fromkeys(n for f in factors for n in layerwise[f]))
    rescale = eq.get('rescale') or {}
    lines += ['', f"Equivariance error Delta(s) by representation ({eq.get('num_images', '?')} "
              f"test images; L_s: {rescale.get('method', '?')}, antialias "
              f"{rescale.get('antialias', '?')})", '']
    lines += _header(['representation', 'action'] + [f's = {float(f):.3f}' for f in factors])
    actions = eq.get('actions') or {}
    for n in names:
      lines.append(_row([n, actions.get(n, MISSING)]
                        + [_num(layerwise[f].get(n), '.3g') for f in factors]))
  lines += skipped_notes(eq.get('skipped') or {})
  return '\n'.join(lines) + '\n'


def skipped_notes(skipped: dict) -> list[str]:
  """Lines saying which representations were not measured at which factor, and why.

  skipped: {factor_key: {representation: reason}} (older results.json files:
  {factor_key: reason} for the whole factor).
  """
  lines = []
  for f, why in skipped.items():
    if isinstance(why, dict):
      names = ', '.join(why)
      why = next(iter(why.values()), '')
      lines.append(f'\ns = {float(f):.4f}: {names} not measured ({why})')
    else:
      lines.append(f'\ns = {float(f):.4f} not measured: {why}')
  return lines


def _delta_names():
  return [f'Delta {layer} {s:g}' for layer in DELTA_LAYERS for s in DELTA_FACTORS]


def _delta_cells(results_list) -> list[str]:
  """Mean Delta over runs for each (layer, factor); '-' unless every run has it."""
  cells = []
  for layer in DELTA_LAYERS:
    for s in DELTA_FACTORS:
      values = [delta(r, s, layer) for r in results_list]
      ok = results_list and all(v is not None for v in values)
      cells.append(_num(float(np.mean(values)) if ok else None, '.3g'))
  return cells


def comparison_markdown(runs: dict) -> str:
  """comparison.md: {label: results} -> one row per run, in the given order."""
  lines = _header(['run', 'params', 'step', 'test error %'] + _delta_names())
  for label, r in runs.items():
    lines.append(_row([label, _num(r.get('params'), ','), r.get('step', MISSING),
                       _num(_error_pct(r), '.2f')] + _delta_cells([r])))
  return '\n'.join(lines) + '\n'


# --- The published table: runs grouped by model family, size and setting. ---

# Models without a size suffix whose network runs at another resolution than
# its input: DISCO up-samples the 28x28 digits 2x (the reference's 56 column).
NATIVE_SIZE = {'mnist_disco': 56}


def split_model_name(name: str, image_size=None) -> tuple[str, int]:
  """'mnist_ses_scalar_28' -> ('mnist_ses_scalar', 28); others keep their name.

  The reference's 'p' variants (tuned for the '+' setting) are rows of their
  own: 'mnist_ses_scalar_56p' -> ('mnist_ses_scalar (p)', 56). A name without
  a size suffix (e.g. 'dss_v1') goes in the column of NATIVE_SIZE or of
  `image_size` (default 28).
  """
  m = re.fullmatch(r'(.+)_(\d+)(p?)', name)
  if m and int(m.group(2)) in SIZES:
    return m.group(1) + (' (p)' if m.group(3) else ''), int(m.group(2))
  return name, int(NATIVE_SIZE.get(name) or image_size or SIZES[0])


def _mean_std(values, epochs=()) -> str:
  """'2.56 ± 0.04 (n=6, 60 ep)': mean and sample std (ddof=1) over realizations.

  `epochs`: the runs' numbers of epochs, where known (several: all listed).
  """
  if not values:
    return MISSING
  v = np.asarray(values, np.float64)
  known = sorted({int(e) for e in epochs if e is not None})
  ep = f", {'/'.join(map(str, known))} ep" if known else ''
  if len(v) == 1:
    return f'{v[0]:.2f} (n=1{ep})'
  return f'{v.mean():.2f} ± {v.std(ddof=1):.2f} (n={len(v)}{ep})'


def _image_size(results: dict):
  return _get(results, 'data', 'image_size') or _get(results, 'config', 'image_size')


def _cells(runs: list[dict]) -> dict:
  """{(family, size, setting): [run, ...]} ordered by realization."""
  cells = {}
  for run in runs:
    family, size = split_model_name(run['model'], _image_size(run['results']))
    cells.setdefault((family, size, run['setting']), []).append(run)
  for group in cells.values():
    group.sort(key=lambda r: r['realization'])
  return cells


# The fields of results.json['data'] that define the data protocol: runs that
# differ in any of them must not share a table. The source is its content
# (source_identity: the files' checksums), not the path it was read from;
# runs recorded before the identity fall back to the path.
PROTOCOL_KEYS = ('dataset', 'source_identity', 'generator', 'rescale', 'input_norm',
                 'image_size')


def _protocol_value(data: dict, key: str):
  if key == 'source_identity' and key not in data:
    return data.get('data_source')
  return data.get(key)


def check_one_protocol(runs: list[dict]) -> None:
  """Raises ValueError if the runs were trained/evaluated on different data protocols.

  A run's protocol is results.json['data'][k] for k in PROTOCOL_KEYS (a run
  without a 'data' entry, from before it was recorded, is not checked).
  """
  seen = {}
  for run in runs:
    data = run['results'].get('data')
    if not data:
      continue
    for key in PROTOCOL_KEYS:
      value = json.dumps(_protocol_value(data, key), sort_keys=True)
      first = seen.setdefault(key, (value, run['dir']))
      if first[0] != value:
        raise ValueError(
            f"runs of different data protocols in one table: data.{key} is {first[0]} in "
            f"{first[1]} but {value} in {run['dir']}. Render them as separate tables.")


def published_table(runs: list[dict]) -> str:
  """The published-table layout, one row per model family.

  Columns: model, params, test error % (mean ± std over realizations, n
  runs) for 28, 28+, 56 and 56+ ('+': the 'plus' setting), then the mean
  Delta of the plain 28x28 runs (the 56 ones where no 28 ran) for each layer
  of DELTA_LAYERS at each factor of DELTA_FACTORS. Rows by the best plain
  28x28 error. '-' marks a cell that was not run.
  """
  cells = _cells(runs)
  families = list(dict.fromkeys(k[0] for k in cells))
  columns = [(s, st) for s in SIZES for st in SETTINGS]

  def errors(key):
    return [_error_pct(r['results']) for r in cells.get(key, [])
            if _error_pct(r['results']) is not None]

  def sort_key(fam):
    for key in ((fam, s, st) for s, st in columns):
      if errors(key):
        return (columns.index(key[1:]), float(np.mean(errors(key))))
    return (len(columns), 0.0)

  lines = _header(['model', 'params'] + [f"{s}{'+' if st == 'plus' else ''}" for s, st in columns]
                  + _delta_names())
  for fam in sorted(families, key=sort_key):
    params = list(dict.fromkeys(r['results'].get('params') for s, st in columns
                                for r in cells.get((fam, s, st), [])
                                if r['results'].get('params') is not None))
    reference = cells.get((fam, 28, 'plain')) or cells.get((fam, 56, 'plain')) or []
    lines.append(_row([fam, ' / '.join(f'{p:,}' for p in params) or MISSING]
                      + [_mean_std(errors((fam,) + c),
                                   [r.get('epochs') for r in cells.get((fam,) + c, [])])
                         for c in columns]
                      + _delta_cells([r['results'] for r in reference])))
  return '\n'.join(lines) + '\n'


def runs_table(runs: list[dict]) -> str:
  """What ran: one row per (model, setting): realizations, steps, training time.

  Runs tagged with a 'source' (their root, when a table is rendered from
  several) get a 'from' column, and the training time is averaged per source.
  """
  groups = {}
  for run in runs:
    groups.setdefault((run['model'], run['setting']), []).append(run)
  sources = any('source' in run for run in runs)
  lines = _header(['model', 'setting', 'realizations', 'epochs', 'step evaluated',
                   'train time / run', 'eval time / run'] + (['from'] if sources else []))
  for (model, setting), group in sorted(groups.items()):
    group.sort(key=lambda r: r['realization'])
    steps = [str(r['results'].get('step', MISSING)) for r in group]  # one per realization
    # One mean training time per root: runs from different machines are not averaged.
    by_source = {}
    for r in group:
      by_source.setdefault(r.get('source', MISSING), []).append(r)
    def minutes(key):
      out = []
      for part in by_source.values():
        secs = [r[key] for r in part if r.get(key) is not None]
        out.append(f'{np.mean(secs) / 60:.1f} min' if secs else MISSING)
      return ', '.join(out)
    epochs = sorted({str(r['epochs']) for r in group if r.get('epochs') is not None})
    row = [model, setting, ','.join(r['realization'] for r in group),
           ','.join(epochs) or MISSING, ','.join(steps), minutes('train_seconds'),
           minutes('eval_seconds')]
    if sources:
      row.append(', '.join(f"{src} ({','.join(r['realization'] for r in part)})"
                           for src, part in by_source.items()))
    lines.append(_row(row))
  return '\n'.join(lines) + '\n'


def reproduction_markdown(runs: list[dict]) -> str:
  """The published-table layout, then the list of runs behind it.

  Raises:
    ValueError: the runs used different data protocols (`check_one_protocol`).
  """
  check_one_protocol(runs)
  return (published_table(runs) + '\nRuns (realizations, checkpoint step evaluated, '
          'wall-clock training time):\n\n' + runs_table(runs))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('roots', nargs='+', metavar='root',
                      help='directory holding <model>/<plain|plus>/r<k>/ runs; with several, '
                           'the runs of all (e.g. from two machines) form one table and the '
                           'list of runs says which root each came from')
  parser.add_argument('--out', help='markdown file to write (default: print only)')
  parser.add_argument('--header', default='', help='text put above the table')
  args = parser.parse_args(argv)
  runs = []
  for root in args.roots:
    found = records.load_runs(root)
    if len(args.roots) > 1:
      for run in found:
        run['source'] = root
    runs += found
  table = reproduction_markdown(runs)
  text = (args.header.rstrip() + '\n\n' if args.header else '') + table
  if args.out:
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as f:
      f.write(text)
  print(text, end='')


if __name__ == '__main__':
  main()
