"""Evaluation of a trained run: accuracy tables, equivariance curves, plots.

Writes to <workdir>/eval/: results.json, results.md, accuracy_vs_scale.png and
equivariance_by_layer.png (layer-wise Delta, one curve per scale factor). `compare` overlays several runs (the study's
headline figure).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os

import jax.numpy as jnp
import numpy as np

from scalenet import checkpoint, config as config_lib, equivariance, models, plots
from scalenet import representations, run_record, runtime, tables, transforms
from scalenet.data import builders, generate, normalize, pipeline
from flax import nnx


_factor_key = tables.factor_key  # The one factor-key scheme ('0.5000').


def equivariance_results(model, images: np.ndarray, config, preprocess=None) -> dict:
  """Layer-wise Delta(s) of `model` on `images`, for every factor of the run.

  Factors: config.eval_equivariance_factors plus the model's smallest exact
  factor (1/r for its finest scale ratio r). A factor that cannot act on
  some representation exactly (not a power of its ratio) is recorded under
  'skipped' with the reason, never rounded.

  Returns:
    {'rescale': L_s, 'num_images', 'reduction', 'actions': {name: action},
     'layerwise': {factor key: {name: Delta}},
     'skipped': {factor key: {name: reason}}}.
  """
  actions = model.scale_actions()
  factors = sorted(set(config.eval_equivariance_factors)
                   | {representations.smallest_exact_factor(actions)})
  spec = transforms.spec_from_config(config)
  curves, skipped = equivariance.layerwise_curves(
      model, images, factors, rescale_fn=spec, batch_size=config.eval_batch_size,
      preprocess=preprocess)
  return {
      'rescale': spec.describe(), 'num_images': len(images), 'reduction': 'mean',
      'actions': {k: a.kind if a.ratio is None else f'{a.kind}(r={a.ratio:.6g})'
                  for k, a in actions.items()},
      'layerwise': {_factor_key(f): c for f, c in curves.items()},
      'skipped': {_factor_key(f): why for f, why in skipped.items()},
  }


def _predictions(logits_fn, images, batch_size: int) -> np.ndarray:
  return np.concatenate([np.asarray(jnp.argmax(logits_fn(images[i:i + batch_size]), -1))
                         for i in range(0, len(images), batch_size)])


def resolution_results(model, images: np.ndarray, labels: np.ndarray, config,
                       preprocess=None) -> dict:
  """The resolution action on `images`: per grid size n of
  config.eval_resolution_sizes, the accuracy on D_n images (the reference's
  multi-resolution test), the scale consistency (the fraction of images whose
  prediction at n is the one at full resolution), and layer-wise Delta at
  s = n / H. A model that does not take n x n inputs is skipped, with why.

  Returns:
    {'sizes', 'accuracy': {n: acc}, 'consistency': {n: agreement},
     'mean_consistency', 'layerwise': {factor key: {name: Delta}},
     'skipped': {factor key: {name: reason}}} or {'sizes', 'not_measured': reason}.
  """
  sizes = [int(n) for n in config.eval_resolution_sizes]
  if not sizes:
    return {'sizes': [], 'not_measured': 'config.eval_resolution_sizes is empty'}
  action = transforms.RESOLUTION
  x = jnp.asarray(images)
  try:
    for n in sizes:
      equivariance.check_takes_input(model, x[:1], n / x.shape[1], action,
                                     equivariance.representation_fn(model, preprocess))
  except ValueError as e:
    return {'sizes': sizes, 'not_measured': str(e)}
  apply, state = models.make_apply(model)  # logits only, inference mode
  pre = preprocess or (lambda v: v)
  logits_fn = lambda v: apply(state, pre(v))
  bs = config.eval_batch_size
  full = _predictions(logits_fn, x, bs)
  accuracy, consistency = {}, {}
  for n in sizes:
    pred = _predictions(logits_fn, action(x, n / x.shape[1]), bs)
    accuracy[str(n)] = float(np.mean(pred == labels))
    consistency[str(n)] = float(np.mean(pred == full))
  curves, skipped = equivariance.layerwise_curves(
      model, x, [n / x.shape[1] for n in sizes], rescale_fn=action, batch_size=bs,
      preprocess=preprocess)
  return {'sizes': sizes, 'action': action.describe(), 'accuracy': accuracy,
          'full_accuracy': float(np.mean(full == labels)), 'consistency': consistency,
          'mean_consistency': float(np.mean(list(consistency.values()))),
          'layerwise': {_factor_key(f): c for f, c in curves.items()},
          'skipped': {_factor_key(f): why for f, why in skipped.items()}}


def accuracy_vs_scale(config, eval_def, state, datasets, mesh, by_split: dict) -> dict:
  """{factor key: accuracy} for config.eval_scale_factors.

  A factor with a stored fixed-scale split takes that split's accuracy from
  `by_split` (each split is evaluated once); the others (enlargements) are
  the unscaled test split rescaled on the fly by the run's L_s
  (transforms.spec_from_config), the factor traced into one compiled step.
  """
  spec = transforms.spec_from_config(config)
  out = {}
  unscaled = datasets.eval.get(generate.fixed_split_name(1.0))
  for f in config.eval_scale_factors:
    name = generate.fixed_split_name(f)
    if name in by_split:
      acc = by_split[name]
    elif unscaled is not None:
      acc = runtime.evaluate_split(eval_def, state, unscaled, config.eval_batch_size, mesh,
                                     factor=f, rescale=spec,
                                     input_norm=config.input_norm)['accuracy']
    else:
      continue
    out[_factor_key(f)] = acc
  return out


def run_config(workdir: str, config=None):
  """The config to evaluate `workdir` with: its own, or `config` if it agrees.

  Args:
    workdir: a training workdir (config.json and checkpoints).
    config: None, or a config that must equal the run's on every model and
      data key (config.IDENTITY_KEYS); its other keys (eval_*) are used.

  Raises:
    CheckpointError: no checkpoint, or `config` disagrees (naming the keys).
  """
  if not checkpoint.has_checkpoint(workdir):
    raise checkpoint.CheckpointError(f'no checkpoint in {workdir}: train first.')
  saved = run_record.read_config(workdir)
  if config is None:
    return saved
  run_record.check_identity(saved, config, f'evaluating {workdir}')
  return copy.deepcopy(config)


def restore_selected(config, workdir: str, model_state, steps_per_epoch: int):
  """Restores the checkpoint the config selects (parameters and batch statistics only).

  config.eval_checkpoint_step: that step of checkpoints/; else
  config.eval_checkpoint: 'best' (best/, highest validation accuracy) or
  'latest'.

  Returns:
    (model_state, {'kind', 'step', 'epoch'[, 'validation_accuracy']}).
  """
  if config.eval_checkpoint_step is None and config.eval_checkpoint == 'best':
    mngr = checkpoint.best_manager(workdir, read_only=True)
    meta = checkpoint.best_meta(mngr)
    if meta is None:
      raise checkpoint.CheckpointError(
          f'{workdir} has no best checkpoint (best/): the run has not finished an epoch '
          'with a validation split yet. Evaluate its latest checkpoint with --config '
          '<its config file> --config.eval_checkpoint=latest.')
    model_state, _ = checkpoint.restore_weights(mngr, model_state, meta['step'])
    return model_state, {'kind': 'best', **meta}
  mngr = checkpoint.manager(workdir, read_only=True)
  model_state, step = checkpoint.restore_weights(mngr, model_state, config.eval_checkpoint_step)
  kind = 'latest' if config.eval_checkpoint_step is None else 'step'
  return model_state, {'kind': kind, 'step': int(step), 'epoch': step / steps_per_epoch}


def data_identity(config, datasets) -> dict:
  """What results.json records about the data: the keys that define it, and sizes."""
  ident = run_record.identity(config)
  out = {k: ident[k] for k in config_lib.DATA_KEYS}
  out['source_identity'] = builders.source_identity(config.dataset, out['data_source'])
  out['source_files'] = builders.source_record(config.dataset, out['data_source'])
  out['image_shape'] = list(datasets.image_shape)
  out['split_sizes'] = {'train': len(datasets.train),
                        **{k: len(v) for k, v in datasets.eval.items()}}
  return out


def _markdown(results: dict) -> str:
  return tables.run_markdown(results)


def check_writable(out_dir: str) -> None:
  """Raises PermissionError naming `out_dir` if results cannot be written there."""
  try:
    os.makedirs(out_dir, exist_ok=True)
    probe = os.path.join(out_dir, '.write_probe')
    with open(probe, 'w') as f:
      f.write('')
    os.remove(probe)
  except OSError as e:
    raise PermissionError(
        f'cannot write the evaluation to {out_dir} ({type(e).__name__}: {e}); nothing was '
        'computed. Pass another output directory (evaluate.py --out DIR).') from e


def evaluate(config, workdir: str, datasets: pipeline.Datasets | None = None,
             out_dir: str | None = None) -> dict:
  """Evaluates the run in `workdir`: its best (or selected) checkpoint, every split once.

  Args:
    config: None to use the run's own config.json; else a config that agrees
      with it on every model and data key (`run_config`).
    workdir: the training workdir (read only).
    datasets: optional pre-loaded data (tests); by default every split.
    out_dir: where results go (default <workdir>/eval/); checked writable
      before anything is computed.

  Returns:
    The results dict written to results.json.
  """
  out_dir = out_dir or os.path.join(workdir, 'eval')
  check_writable(out_dir)
  config = run_config(workdir, config)
  config_lib.validate(config)
  mesh = runtime.make_mesh()
  runtime.check_batch(config.eval_batch_size, mesh, 'eval_batch_size')
  if datasets is None:
    with config.unlocked():
      config.eval_splits = None  # every split: the fixed-scale ones included
    datasets = pipeline.get_datasets(config)
  if config.get('eval_split_images'):
    n = int(config.eval_split_images)
    datasets = dataclasses.replace(datasets, eval={
        k: pipeline.Split(v.images[:n], v.labels[:n], v.scales[:n])
        for k, v in datasets.eval.items()})
  eval_def, state = runtime.create_model(config, datasets.num_classes, mesh)
  state, selected = restore_selected(config, workdir, state,
                                     max(datasets.steps_per_epoch(config.batch_size), 1))
  step = selected['step']
  model = nnx.merge(eval_def, state)

  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  by_split = {}
  for name, split in tqdm(datasets.eval.items(), desc='evaluating splits', unit='split',
                          disable=not config.get('progress_bar', True)):
    by_split[name] = runtime.evaluate_split(eval_def, state, split, config.eval_batch_size,
                                              mesh, input_norm=config.input_norm)['accuracy']
  base = datasets.eval.get(generate.fixed_split_name(1.0)) or datasets.eval['test']
  n = min(config.eval_num_images, len(base))
  images = base.images[:n].astype(np.float32) / 255.0
  preprocess = functools.partial(normalize.normalize, norm=config.input_norm)
  eq = equivariance_results(model, images, config, preprocess=preprocess)
  resolution = resolution_results(model, images, np.asarray(base.labels[:n]), config,
                                  preprocess=preprocess)
  results = {
      'model_name': config.model_name, 'model': config.model.to_dict(),
      'dataset': config.dataset, 'step': int(step), 'params': models.count_params(model),
      'checkpoint': selected, 'data': data_identity(config, datasets),
      'test_accuracy': by_split.get('test'), 'test_error': 1 - by_split.get('test', np.nan),
      'accuracy_by_split': by_split,
      'accuracy_vs_scale': accuracy_vs_scale(config, eval_def, state, datasets, mesh, by_split),
      'equivariance': eq, 'resolution': resolution,
  }
  write_outputs(results, out_dir)
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
  eq = results['equivariance']
  if eq['layerwise']:
    plots.plot_layers({f's = {float(f):.3f}': c for f, c in eq['layerwise'].items()},
                      title=f'{name}: equivariance error by layer',
                      path=os.path.join(out_dir, 'equivariance_by_layer.png'))


def run_labels(workdirs) -> list[str]:
  """Shortest distinct path tails: a/r0, b/r0 for two runs named r0; basenames otherwise.

  Raises:
    ValueError: the same workdir twice.
  """
  parts = [os.path.normpath(os.path.abspath(wd)).split(os.sep) for wd in workdirs]
  if len({tuple(p) for p in parts}) < len(parts):
    raise ValueError(f'a workdir is given twice: {list(workdirs)}.')
  depth = 1
  while len({tuple(p[-depth:]) for p in parts}) < len(parts):
    depth += 1
  return ['/'.join(p[-depth:]) for p in parts]


def compare(workdirs, out_dir: str) -> dict:
  """Overlays the evaluated runs in `workdirs`; writes plots and comparison.md."""
  runs = {}
  for wd, label in zip(workdirs, run_labels(workdirs)):
    path = os.path.join(wd, 'eval', 'results.json')
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path} does not exist: run evaluate.py on {wd} first.')
    with open(path) as f:
      res = json.load(f)
    runs[f"{res['model_name']} ({label})"] = res
  os.makedirs(out_dir, exist_ok=True)
  plots.plot_curves({k: r['accuracy_vs_scale'] for k, r in runs.items()}, ylabel='test accuracy',
                    title='accuracy vs scale', path=os.path.join(out_dir, 'accuracy_vs_scale.png'))
  half = _factor_key(0.5)
  plots.plot_layers({k: r['equivariance']['layerwise'][half] for k, r in runs.items()
                     if half in r['equivariance']['layerwise']},
                    title='equivariance error by layer, s = 0.5',
                    path=os.path.join(out_dir, 'equivariance_by_layer.png'))
  with open(os.path.join(out_dir, 'comparison.md'), 'w') as f:
    f.write(tables.comparison_markdown(runs))
  return runs
