"""Hyperparameter sweeps: one axis at a time around a base config.

config.sweep = (('model.base', (2, 3)), ('learning_rate', (0.003, 0.01))) runs
every value of every key (the others at their base values), each in
<workdir>/<key>=<value>/, trains and evaluates it, then draws one plot per
key: accuracy and equivariance error against the scale factor, a line per
value. A point whose config equals the base config (a key at its base value)
is the run <workdir>/base/, shared by every axis; no two points with equal
configs are trained twice. Points already evaluated are skipped, and
unfinished ones resume from their checkpoints, so an interrupted sweep
continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import os
from typing import NamedTuple

from scalenet import evaluate, models, plots, tables, train


def point_name(key: str, value) -> str:
  text = str(value).replace(' ', '').replace('(', '').replace(')', '').replace(',', '-')
  return f'{key}={text}'


def _set(config, dotted: str, value):
  """Sets config[dotted]; model.* keys may be any argument the model takes."""
  *parents, leaf = dotted.split('.')
  node = config
  for p in parents:
    node = node[p]
  known = set(node.keys())
  if parents == ['model']:
    known |= models.model_kwargs(config.model_name)
  if leaf not in known:
    raise ValueError(f"config.sweep key '{dotted}' is not a key of the config "
                     f"(or an argument of model {config.model_name!r}); known: {sorted(known)}.")
  node[leaf] = value


BASE_RUN = 'base'


class Point(NamedTuple):
  """One value of one swept key: `run` names the directory of its training run."""
  key: str
  value: object
  run: str
  config: object


def _identity(config) -> str:
  """Equal for equal runs: the model's keywords completed with their defaults."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.model = {**models.model_defaults(config.model_name), **config.model}
  return config.to_json_best_effort(sort_keys=True)


def sweep_points(config) -> list[Point]:
  """Every point of the sweep; points with equal configs share one `run`.

  Raises:
    ValueError: an empty sweep, or a key that is neither a config key nor an
      argument of the model (naming it).
  """
  if not config.sweep:
    raise ValueError('config.sweep is empty: nothing to sweep.')
  base = copy.deepcopy(config)
  with base.unlocked():
    base.sweep = ()
  runs = {_identity(base): BASE_RUN}
  points = []
  for key, values in config.sweep:
    for value in values:
      point = copy.deepcopy(base)
      with point.unlocked():
        _set(point, key, value)
      run = runs.setdefault(_identity(point), point_name(key, value))
      points.append(Point(key, value, run, point))
  return points


def run_sweep(config, workdir: str) -> dict:
  """Runs (or resumes) every distinct point once; returns {key: {value: results}}.

  A point's directory may be a link to another run of the same config (e.g.
  scripts/run_study.sh links the default point to experiment A's run).

  Raises:
    FileNotFoundError: such a link's run does not exist (before any training).
  """
  points = sweep_points(config)  # validates every key before any training
  runs = {}
  for p in points:
    runs.setdefault(p.run, p.config)
  for run in runs:  # A point shared with another experiment's run: that run must exist.
    wd = os.path.join(workdir, run)
    if os.path.islink(wd) and not os.path.exists(wd):
      raise FileNotFoundError(
          f'{wd} links to {os.readlink(wd)}, which does not exist: that run is this '
          f'sweep\'s {run} point (it is reused, not trained again); run it first.')
  results = {}
  for i, (run, point) in enumerate(runs.items()):
    wd = os.path.join(workdir, run)
    results_path = os.path.join(wd, 'eval', 'results.json')
    shared = sorted(f'{p.key}={p.value}' for p in points if p.run == run)
    print(f"[{i + 1}/{len(runs)}] {run} ({', '.join(shared)}) -> {wd}")
    if os.path.exists(results_path):
      with open(results_path) as f:
        results[run] = json.load(f)
    else:
      train.train_and_evaluate(point, wd)
      results[run] = evaluate.evaluate(point, wd)
  done = {}
  for p in points:
    done.setdefault(p.key, {})[str(p.value)] = results[p.run]
  plot_sweep(done, os.path.join(workdir, 'plots'))
  return done


def plot_sweep(done: dict, out_dir: str) -> None:
  os.makedirs(out_dir, exist_ok=True)
  for key, by_value in done.items():
    safe = key.replace('.', '_')
    plots.plot_curves({f'{key}={v}': r['accuracy_vs_scale'] for v, r in by_value.items()},
                      ylabel='test accuracy', title=f'sweep over {key}: accuracy',
                      path=os.path.join(out_dir, f'{safe}_accuracy.png'))
    half = tables.factor_key(0.5)
    plots.plot_layers({f'{key}={v}': r['equivariance']['layerwise'][half]
                       for v, r in by_value.items() if half in r['equivariance']['layerwise']},
                      title=f'sweep over {key}: equivariance error by layer, s = 0.5',
                      path=os.path.join(out_dir, f'{safe}_equivariance.png'))
