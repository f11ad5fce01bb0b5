"""Evaluation of a trained run: accuracy tables, equivariance curves, plots.

Writes to <workdir>/eval/: results.json, results.md, accuracy_vs_scale.png and
equivariance_vs_scale.png. `compare` overlays several runs (the study's
headline figure).
"""

from __future__ import annotations

import functools
import json
import os

import jax
import numpy as np

from scalenet import checkpoint, config as config_lib, equivariance, models, plots
from scalenet import train as train_lib
from scalenet import transforms
from scalenet.data import generate, pipeline
from flax import nnx


def _factor_key(f: float) -> str:
  return f'{f:.4f}'


def batched_equivariance_error(fn, images: np.ndarray, factor: float, batch: int,
                               reduction: str = 'mean') -> float:
  """Delta(s) over many images, computed in chunks of `batch` (same value as one call)."""
  terms = [equivariance.equivariance_terms(fn, images[i:i + batch], factor)
           for i in range(0, len(images), batch)]
  num = np.concatenate([np.asarray(t[0]) for t in terms])
  den = np.concatenate([np.asarray(t[1]) for t in terms])
  return float(equivariance.reduce_terms(num, den, reduction))


def accuracy_vs_scale(config, eval_def, state, datasets, mesh) -> dict:
  """{factor: accuracy}: stored fixed-scale splits, and enlargements computed on the fly."""
  out = {}
  unscaled = datasets.eval.get(generate.fixed_split_name(1.0))
  for f in config.eval_scale_factors:
    name = generate.fixed_split_name(f)
    if name in datasets.eval:
      acc = train_lib.evaluate_split(eval_def, state, datasets.eval[name],
                                     config.eval_batch_size, mesh)['accuracy']
    elif unscaled is not None:
      rescale = functools.partial(transforms.rescale, factor=f)
      acc = train_lib.evaluate_split(eval_def, state, unscaled, config.eval_batch_size, mesh,
                                     transform=rescale)['accuracy']
    else:
      continue
    out[_factor_key(f)] = acc
  return out


def _markdown(results: dict) -> str:
  lines = [f"# {results['model_name']} (step {results['step']}, {results['params']:,} params)",
           '', '| split | accuracy | error % |', '|---|---|---|']
  for name, acc in results['accuracy_by_split'].items():
    lines.append(f'| {name} | {acc:.4f} | {100 * (1 - acc):.2f} |')
  lines += ['', '| scale factor | accuracy | Delta features | Delta logits |', '|---|---|---|---|']
  eq = results['equivariance']
  for f in sorted(set(results['accuracy_vs_scale']) | set(eq['features']), key=float):
    acc = results['accuracy_vs_scale'].get(f)
    cells = [f'{acc:.4f}' if acc is not None else '-',
             f"{eq['features'][f]:.4g}" if f in eq['features'] else '-',
             f"{eq['logits'][f]:.4g}" if f in eq['logits'] else '-']
    lines.append(f'| {float(f):.3f} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def evaluate(config, workdir: str, datasets: pipeline.Datasets | None = None) -> dict:
  """Evaluates the latest (or config.eval_checkpoint_step) checkpoint in `workdir`."""
  config_lib.validate(config)
  mesh = train_lib.make_mesh()
  train_lib.check_batch(config.eval_batch_size, mesh, 'eval_batch_size')
  if datasets is None:
    with config.unlocked():
      config.eval_splits = None  # every split: the fixed-scale ones included
    datasets = pipeline.get_datasets(config)
  tx = train_lib.make_optimizer(config, train_lib.make_schedule(config, 1))
  _, eval_def, state = train_lib.create_state(config, datasets.num_classes, tx, mesh)
  mngr = checkpoint.manager(workdir, read_only=True)
  if not mngr.all_steps():
    raise checkpoint.CheckpointError(f'no checkpoint in {workdir}/checkpoints: train first.')
  state, step = checkpoint.restore(mngr, state, config.eval_checkpoint_step)
  model, _ = nnx.merge(eval_def, state)

  by_split = {name: train_lib.evaluate_split(eval_def, state, split, config.eval_batch_size,
                                             mesh)['accuracy']
              for name, split in datasets.eval.items()}
  base = datasets.eval.get(generate.fixed_split_name(1.0)) or datasets.eval['test']
  n = min(config.eval_num_images, len(base))
  images = base.images[:n].astype(np.float32) / 255.0
  features = jax.jit(model.features)
  logits = jax.jit(model.__call__)
  eq = {'features': {}, 'logits': {}}
  for f in config.eval_scale_factors:
    for name, fn in (('features', features), ('logits', logits)):
      eq[name][_factor_key(f)] = batched_equivariance_error(fn, images, f, config.eval_batch_size)
  results = {
      'model_name': config.model_name, 'model': config.model.to_dict(),
      'dataset': config.dataset, 'step': int(step), 'params': models.count_params(model),
      'test_accuracy': by_split.get('test'), 'test_error': 1 - by_split.get('test', np.nan),
      'accuracy_by_split': by_split,
      'accuracy_vs_scale': accuracy_vs_scale(config, eval_def, state, datasets, mesh),
      'equivariance': eq, 'equivariance_num_images': n,
  }
  write_outputs(results, os.path.join(workdir, 'eval'))
  return results


def write_outputs(results: dict, out_dir: str) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write(_markdown(results))
  name = results['model_name']
  plots.plot_curves({name: results['accuracy_vs_scale']}, ylabel='test accuracy',
                    title=f'{name}: accuracy vs scale', path=os.path.join(out_dir, 'accuracy_vs_scale.png'))
  plots.plot_curves({f'{name} {k}': v for k, v in results['equivariance'].items()},
                    ylabel='equivariance error Delta(s)', logy=True,
                    title=f'{name}: equivariance error',
                    path=os.path.join(out_dir, 'equivariance_vs_scale.png'))


def compare(workdirs, out_dir: str) -> dict:
  """Overlays the evaluated runs in `workdirs`; writes plots and comparison.md."""
  runs = {}
  for wd in workdirs:
    path = os.path.join(wd, 'eval', 'results.json')
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path} does not exist: run evaluate.py on {wd} first.')
    with open(path) as f:
      res = json.load(f)
    runs[f"{res['model_name']} ({os.path.basename(os.path.normpath(wd))})"] = res
  os.makedirs(out_dir, exist_ok=True)
  plots.plot_curves({k: r['accuracy_vs_scale'] for k, r in runs.items()}, ylabel='test accuracy',
                    title='accuracy vs scale', path=os.path.join(out_dir, 'accuracy_vs_scale.png'))
  plots.plot_curves({k: r['equivariance']['features'] for k, r in runs.items()}, logy=True,
                    ylabel='Delta(s) on features', title='equivariance error (features)',
                    path=os.path.join(out_dir, 'equivariance_vs_scale.png'))
  lines = ['| run | params | step | test error % | Delta(0.5) | Delta(2.0) |',
           '|---|---|---|---|---|---|']
  for k, r in runs.items():
    feats = r['equivariance']['features']
    d = lambda f: f'{feats[_factor_key(f)]:.4g}' if _factor_key(f) in feats else '-'
    err = r.get('test_error')
    lines.append(f"| {k} | {r['params']:,} | {r['step']} | "
                 f"{'-' if err is None else f'{100 * err:.2f}'} | {d(0.5)} | {d(2.0)} |")
  with open(os.path.join(out_dir, 'comparison.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return runs
