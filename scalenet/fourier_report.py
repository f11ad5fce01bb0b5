"""results/fourier.md: the Fourier scale-equivariant network beside the table's models.

  python -m scalenet.fourier_report [--runs ROOT ...] [--out-dir results]

Models: fourier_se_mnist (Rahman & Yeh 2023) and mnist_ses_vector_28,
mnist_disco, mnist_dss_vector_28, mnist_cnn_28. Two actions of the scale group
on the input: the canvas rescale (`transforms.DEFAULT`, the project's L_s) and
the resolution change (`transforms.RESOLUTION`, ideal resampling to a smaller
grid); a model that takes one input size only is reported as such under the
latter.

- At random initialisation (always): layer-wise Delta at s = 1/2 (and each
  model's smallest exact factor), mean +- std over seeds, on the first
  mnist_5k digits (`equivariance_report.measure`). Cached in fourier.json
  beside the report; --recompute measures again.
- Trained (with --runs ROOT, runs laid out as <model>/<setting>/r<k> by
  scripts/reproduce_mnist_scale.sh, setting plain or multires, or as
  <model>/r<k> by scripts/run_study.sh; --runs may repeat, and runs of
  different data protocols are refused): one row per model, setting and
  number of epochs with test error, accuracy and scale consistency under the
  resolution action (`evaluate.resolution_results`), and Delta at s = 1/2
  under both actions, mean +- std over realizations.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

import numpy as np

from scalenet import equivariance_report, records, tables, transforms
from scalenet.data import readers

MODELS = ('fourier_se_mnist', 'mnist_ses_vector_28', 'mnist_disco', 'mnist_dss_vector_28',
          'mnist_cnn_28')
ACTIONS = {'canvas': transforms.DEFAULT, 'resolution': transforms.RESOLUTION}
HALF = tables.factor_key(0.5)


def measure_at_init(name: str, images: np.ndarray, seeds) -> dict:
  """{action: equivariance_report.measure(...) or {'not_measured': why}}."""
  out = {}
  for action, fn in ACTIONS.items():
    try:
      out[action] = equivariance_report.measure(name, images, seeds, rescale_fn=fn)
    except ValueError as e:
      out[action] = {'not_measured': str(e)}
  return out


def _cell(values) -> str:
  """Mean ± std of `values` (3 significant digits), '-' if none."""
  return records.fmt(values or [], 3).split(' (')[0]


def _three(layers) -> list[str]:
  """The first conv, the last block and the logits among `layers`."""
  return ['block0.conv', records.last_block_name(layers) or 'block0', 'logits']


def init_table(cache: dict) -> list[str]:
  lines = ['| model | action | ' + ' | '.join(['first conv', 'last block', 'logits']) + ' |',
           '|---|---|---|---|---|']
  for name in MODELS:
    for action in ACTIONS:
      r = cache.get(name, {}).get(action)
      if r is None:
        continue
      if 'not_measured' in r:
        lines.append(f'| {name} | {action} | takes one input size only | | |')
        continue
      half = r['factors'].get(HALF, {})
      cells = [f'{_cell(half.get(k))} ({k})' for k in _three(list(r['actions']))]
      lines.append(f'| {name} | {action} | ' + ' | '.join(cells) + ' |')
  return lines + ['']


def _load(roots: Sequence[str]) -> list[dict]:
  """Evaluated runs of MODELS under every root (each run once, however reached)."""
  if isinstance(roots, str):  # would be read as one root per character
    raise TypeError(f'roots must be a sequence of directories, got the string {roots!r}')
  runs, seen = [], set()
  for root in roots:
    try:
      found = records.load_runs(root)
    except FileNotFoundError:
      continue
    for run in found:
      key = os.path.realpath(run['dir'])
      if run['model'] in MODELS and run['setting'] != 'plus' and key not in seen:
        seen.add(key)
        runs.append(run)
  return runs


def trained_table(roots: Sequence[str]) -> list[str]:
  """One row per model, training setting (plain: our protocol; multires:
  Rahman & Yeh's multi-resolution training) and number of epochs, from the
  evaluated runs under the roots (one root, or several: e.g. these runs and
  the study's runs of the other models under the same protocol).

  Raises:
    ValueError: the runs were made on different data protocols
      (`tables.check_one_protocol`).
  """
  shown = _load(roots)
  if not shown:
    return ['No trained run under the given root yet.', '']
  tables.check_one_protocol(shown)
  # Means over grid sizes are over the sizes every shown run was tested at
  # (runs of models measured at one size only have none, and count for nothing here).
  tested = [set(r['results']['resolution']['accuracy']) for r in shown
            if 'accuracy' in r['results'].get('resolution', {})]
  common = sorted(set.intersection(*tested) if tested else set(), key=int)
  sizes = ', '.join(common) or '-'
  lines = ['| model | setting | n | epochs | test error % | resolution acc. % at 14 | '
           f'resolution acc. % (mean over sizes {sizes}) | '
           f'consistency (mean over sizes {sizes}) | '
           'Delta(1/2) canvas: first conv / logits | Delta(1/2) resolution: first conv / '
           'logits |', '|---|---|---|---|---|---|---|---|---|---|']
  for name in MODELS:
    groups = {}  # (setting's rank, epochs) -> runs, rows in settings' then epochs' order
    for r in shown:
      if r['model'] == name:
        key = (records.SETTINGS.index(r['setting']), r['epochs'] or 0)
        groups.setdefault(key, []).append(r)
    if not groups:
      lines.append(f'| {name} | | 0 | | not trained yet | | | | | |')
    for _, rs in sorted(groups.items()):
      setting = rs[0]['setting']
      res = [r['results'] for r in rs]
      reso = [x.get('resolution', {}) for x in res]
      canvas = [x['equivariance']['layerwise'].get(HALF, {}) for x in res]
      by_res = [x.get('layerwise', {}).get(HALF, {}) for x in reso]
      err = [100 * x['test_error'] for x in res]
      acc14 = [100 * x['accuracy']['14'] for x in reso if '14' in x.get('accuracy', {})]
      acc_all = [100 * float(np.mean([x['accuracy'][n] for n in common]))
                 for x in reso if common and 'accuracy' in x]
      cons = [float(np.mean([x['consistency'][n] for n in common]))
              for x in reso if common and 'consistency' in x]
      lines.append(
          f"| {name} | {setting} | {len(rs)} | {rs[0]['epochs'] or '-'} | {_cell(err)} | "
          f'{_cell(acc14)} | {_cell(acc_all)} | {_cell(cons)} | '
          f'{_cell([c.get("block0.conv") for c in canvas])} / '
          f'{_cell([c.get("logits") for c in canvas])} | '
          f'{_cell([c.get("block0.conv") for c in by_res])} / '
          f'{_cell([c.get("logits") for c in by_res])} |')
  return lines + ['']


def render(cache: dict, setting: dict, runs_roots: Sequence[str], notes: str | None) -> str:
  """The report; runs_roots: the roots of trained runs (none: no trained table)."""
  lines = ['# Fourier scale-equivariant layers beside the table\'s models', '',
           'Generated by `python -m scalenet.fourier_report'
           + ''.join(f' --runs {root}' for root in runs_roots) + '`.', '',
           'Two actions of the scale group on the input: **canvas** (the project\'s L_s: '
           f"{setting['canvas']}) and **resolution** ({transforms.RESOLUTION.describe()['canvas']})."
           ' Delta = ||fn(L_s x) - L\'_s fn(x)||^2 / ||L\'_s fn(x)||^2, mean over images.', '',
           f"## At random initialisation (s = 1/2; mean ± std over {setting['seeds']} seeds, "
           f"{setting['num_images']} mnist_5k digits)", '']
  lines += init_table(cache)
  lines += ['"-": not defined at s = 1/2 (a scale-space representation whose scale ratio '
            '1/2 is not a power of, e.g. mnist_ses_vector_28\'s sqrt(3); '
            '`results/equivariance.md` has each model at its own smallest exact factor).', '']
  lines += ['## Trained', '']
  lines += trained_table(runs_roots) if runs_roots else ['Not trained yet (no --runs).', '']
  if notes:
    with open(notes) as f:
      lines += ['## Notes', '', f.read()]
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', action='append',
                      help='root of trained runs (<model>/[plain/]r<k>); repeat for several '
                           'roots made under one data protocol')
  parser.add_argument('--out-dir', default='fourier_report')
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--num-images', type=int, default=64)
  parser.add_argument('--notes', help='markdown appended as the notes')
  parser.add_argument('--recompute', action='store_true')
  args = parser.parse_args(argv)
  cache_path = os.path.join(args.out_dir, 'fourier.json')
  setting = {'seeds': args.seeds, 'num_images': args.num_images,
             'canvas': transforms.DEFAULT.describe()['canvas']}
  cache = {}
  if os.path.exists(cache_path) and not args.recompute:
    with open(cache_path) as f:
      saved = json.load(f)
    if saved.get('setting') == setting:
      cache = saved['models']
  digits = readers.read_mnist_5k()[0][:args.num_images].astype(np.float32) / 255.0
  os.makedirs(args.out_dir, exist_ok=True)
  for name in MODELS:
    if name not in cache:
      print(f'measuring {name} at initialisation', flush=True)
      cache[name] = measure_at_init(name, digits, range(args.seeds))
      with open(cache_path + '.tmp', 'w') as f:
        json.dump({'setting': setting, 'models': cache}, f, indent=1)
      os.replace(cache_path + '.tmp', cache_path)
  out = os.path.join(args.out_dir, 'fourier.md')
  with open(out, 'w') as f:
    f.write(render(cache, setting, args.runs or [], args.notes))
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
