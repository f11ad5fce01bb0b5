"""Layer-wise equivariance of every registered model at random initialisation.

  python -m scalenet.equivariance_report                       # every model, 3 seeds
  python -m scalenet.equivariance_report --models cnn,dss_v1,sesn --seeds 5 --out-dir /tmp/eq

Writes equivariance.md, equivariance.png and the per-model cache
equivariance.json into --out-dir (default ./equivariance_report). The
committed results/equivariance.md is made with
`--out-dir results --notes results/equivariance_notes.md`.

Like Fig. 2 of the SESN paper: Delta(s) of every representation of each model
(`layerwise_equivariance`), at random initialisation, mean +- std over seeds,
at s = 1/2 and at the model's smallest exact factor 1/r. Inputs are the first
`--num-images` mnist_5k digits on their 28x28 canvas (3-channel models: the
digit in every channel, centred on a 32x32 canvas). Writes a markdown report
and a PNG (one panel per factor kind and model group).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import jax
import numpy as np
from flax import nnx

from scalenet import equivariance, models, plots, records, representations, transforms
from scalenet.data import readers
from scalenet import tables
from scalenet.tables import factor_key


def model_inputs(model_name: str, digits: np.ndarray) -> np.ndarray:
  """Digits [N, 28, 28, 1] in [0, 1] as `model_name` takes them."""
  if 'resnet' in model_name:  # CIFAR-shaped models: 32x32x3
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return np.repeat(padded, 3, axis=-1)
  return digits


def measure(name: str, images: np.ndarray, seeds, *, rescale_fn=transforms.DEFAULT,
            batch_size: int = 32) -> dict:
  """{'factors': {key: {layer: [Delta per seed]}}, 'skipped': {key: {layer: reason}},
  'smallest': key of the smallest exact factor, 'actions': {layer: str}}."""
  values, skipped, actions = {}, {}, None
  for seed in seeds:
    model = models.get_model(name, rngs=nnx.Rngs(seed))
    actions = model.scale_actions()
    factors = sorted({0.5, representations.smallest_exact_factor(actions)})
    curves, why = equivariance.layerwise_curves(model, images, factors, rescale_fn=rescale_fn,
                                                batch_size=batch_size)
    skipped.update({factor_key(f): w for f, w in why.items()})
    for f, curve in curves.items():
      for layer, v in curve.items():
        values.setdefault(factor_key(f), {}).setdefault(layer, []).append(v)
  return {'factors': values, 'skipped': skipped, 'smallest': factor_key(
      representations.smallest_exact_factor(actions)),
          'actions': {k: a.kind if a.ratio is None else f'{a.kind}(r={a.ratio:.4g})'
                      for k, a in actions.items()}}


def _cell(vals) -> str:
  if not vals:
    return '-'
  m, s = float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
  return f'{m:.3g} +- {s:.2g}' + (' (>1)' if m > 1 else '')


def _first_last(curve: dict, layers) -> tuple:
  """(first conv, last block, logits) values of `curve` (None where not measured)."""
  last = records.last_block_name(layers)
  return curve.get('block0.conv'), curve.get(last) if last else None, curve.get('logits')


def render(results: dict, header: str) -> str:
  """Markdown: a summary table over models, then one table per model."""
  half = factor_key(0.5)
  lines = [header, '', '## Summary (mean +- std over seeds)', '',
           '| model | scale axis | s = 1/2: block0.conv | last block | logits '
           '| smallest exact s | block0.conv | last block | logits |',
           '|---|---|---|---|---|---|---|---|---|']
  for name, r in results.items():
    ratios = sorted({a for a in r['actions'].values() if a.startswith('scale_space')})
    at_half = _first_last(r['factors'].get(half, {}), r['actions'])
    small = r['smallest']
    at_small = (_first_last(r['factors'].get(small, {}), r['actions']) if small != half
                else ('=',) * 3)
    cells = [_cell(v) if v != '=' else '=' for v in (*at_half, *at_small)]
    lines.append(f"| {name} | {', '.join(ratios) or 'none'} | " + ' | '.join(cells[:3])
                 + f' | {float(small):.4f} | ' + ' | '.join(cells[3:]) + ' |')
  lines += ['', '"-": not measured, because the factor is not an integer power of the '
            'scale ratio of that scale-space representation (never rounded); "=": the '
            'smallest exact factor is 1/2.', '']
  for name, r in results.items():
    keys = sorted(r['factors'], key=float)
    layers = list(r['actions'])
    lines += [f'### {name}', '', '| representation | action | '
              + ' | '.join(f's = {float(k):.4f}' for k in keys) + ' |',
              '|---|---|' + '---|' * len(keys)]
    for layer in layers:
      lines.append(f"| {layer} | {r['actions'][layer]} | "
                   + ' | '.join(_cell(r['factors'][k].get(layer)) for k in keys) + ' |')
    lines += tables.skipped_notes(r['skipped'])
    lines.append('')
  return '\n'.join(lines)


def plot(results: dict, path: str, groups: dict) -> None:
  """Panels: for each group of models, Delta by layer at s = 1/2 and at 1/r."""
  half = factor_key(0.5)
  panels = {}
  for group, names in groups.items():
    names = [n for n in names if n in results]
    if not names:
      continue
    mean = lambda d: {k: float(np.mean(v)) for k, v in d.items()}
    panels[f'{group}: s = 1/2'] = {n: mean(results[n]['factors'][half]) for n in names
                                   if half in results[n]['factors']}
    panels[f'{group}: s = 1/r (smallest exact)'] = {
        f"{n} (s={float(results[n]['smallest']):.3f})":
            mean(results[n]['factors'][results[n]['smallest']]) for n in names}
  plots.plot_layer_panels(panels, path=path)


def _read_cache(path: str) -> list[dict]:
  """[{'setting', 'models'}, ...]: every setting measured into `path`."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    saved = json.load(f)
  return saved['settings'] if 'settings' in saved else [saved]  # one-setting format


def _load_cache(path: str, setting: dict) -> dict:
  """Cached per-model results measured with the same setting, else {}."""
  for entry in _read_cache(path):
    if entry.get('setting') == setting:
      return entry['models']
  return {}


def _save_cache(path: str, setting: dict, results: dict) -> None:
  """Stores `results` under `setting`, keeping the other settings' results."""
  entries = [e for e in _read_cache(path) if e.get('setting') != setting]
  entries.append({'setting': setting, 'models': results})
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump({'settings': entries}, f, indent=1)
  os.replace(tmp, path)  # never a half-written cache


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='all', help="comma list of registry names, or 'all'")
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--num-images', type=int, default=64)
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--out-dir', default='equivariance_report',
                      help='where equivariance.md, equivariance.png and the cache '
                           'equivariance.json go (per-model results: an interrupted or '
                           'partial run resumes, models measured earlier are reused)')
  parser.add_argument('--notes', help='markdown file appended as the report\'s notes')
  parser.add_argument('--recompute', action='store_true',
                      help='measure the --models again even if cached')
  args = parser.parse_args(argv)
  args.out = os.path.join(args.out_dir, 'equivariance.md')
  args.png = os.path.join(args.out_dir, 'equivariance.png')
  args.cache = os.path.join(args.out_dir, 'equivariance.json')
  if args.notes and not os.path.exists(args.notes):
    parser.error(f'--notes {args.notes} does not exist.')
  names = sorted(models.MODELS) if args.models == 'all' else args.models.split(',')
  unknown = sorted(set(names) - set(models.MODELS))
  if unknown:
    parser.error(f'unknown model(s) {unknown}; choose from {sorted(models.MODELS)}.')
  from tqdm.auto import tqdm
  digits = readers.read_mnist_5k()[0][:args.num_images].astype(np.float32) / 255.0
  setting = {'seeds': args.seeds, 'num_images': args.num_images,
             'rescale': transforms.DEFAULT.describe()}
  cache = _load_cache(args.cache, setting)
  if args.recompute:
    cache = {n: r for n, r in cache.items() if n not in names}
  t0 = time.perf_counter()
  for name in tqdm(names, desc='models', unit='model'):
    if name not in cache:
      cache[name] = measure(name, model_inputs(name, digits), range(args.seeds),
                            batch_size=args.batch_size)
      _save_cache(args.cache, setting, cache)
  results = {n: cache[n] for n in sorted(cache)}
  names = list(results)
  spec = transforms.DEFAULT.describe()
  header = '\n'.join([
      '# Layer-wise equivariance error at random initialisation', '',
      f'Command: `python -m scalenet.equivariance_report --models {args.models} '
      f'--seeds {args.seeds} --num-images {args.num_images} --out-dir {args.out_dir}'
      + (f' --notes {args.notes}' if args.notes else '') + '` (models measured earlier with '
      f'the same setting are read from {args.cache})  ',
      f'Date: {datetime.date.today()}; machine: {platform.machine()} '
      f'{os.cpu_count()} CPU cores, jax {jax.__version__} on {jax.devices()[0].platform}; '
      f'this invocation {time.perf_counter() - t0:.0f} s.  ',
      f'Inputs: the first {args.num_images} mnist_5k digits on their 28x28 canvas '
      '(3-channel models: each digit in every channel on a 32x32 canvas). '
      f"L_s: {spec['method']}, antialias {spec['antialias']}; {spec['canvas']}.  ",
      'Delta = ||fn(L_s x) - L\'_s fn(x)||^2 / ||L\'_s fn(x)||^2, mean over images; '
      'models in inference mode (BatchNorm running statistics at their initial values).'])
  text = render(results, header)
  if args.notes:
    with open(args.notes) as f:
      text += '\n## Notes\n\n' + f.read()
  os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
  with open(args.out, 'w') as f:
    f.write(text)
  published = [n for n in names if n.startswith('mnist_')]
  plot(results, args.png, {'study models': [n for n in names if n not in published],
                           'published-table models': published})
  print(f'wrote {args.out} and {args.png}')


if __name__ == '__main__':
  main()
