"""A run's record beside its checkpoints: what was trained, and whether it failed.

- config.json: the run's config. A resume or an evaluation with a config that
  disagrees on a key defining the model or the data is refused, naming the
  keys (`check_identity`); a resume that changes training keys rewrites it and
  appends the change to config_history.jsonl (`record_changes`).
- FAILED.json: a diverged or non-finite run, which is then not resumed
  silently (`check_not_failed`).
"""

from __future__ import annotations

import json
import os

import ml_collections

from scalenet import checkpoint, config as config_lib
from scalenet.data import builders


def _tuples(x):
  if isinstance(x, (list, tuple)):
    return tuple(_tuples(v) for v in x)
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  return x


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with (<workdir>/config.json), on today's schema.

  Keys the file lacks take their defaults; model kwargs lists become tuples.

  Raises:
    FileNotFoundError: the workdir holds no run.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: {workdir} holds no trained run.')
  with open(path) as f:
    saved = json.load(f)
  saved['model'] = _tuples(saved.get('model') or {})
  config = config_lib.default_config()
  config.update(saved)
  return config


def identity(config) -> dict:
  """The model and data keys of `config`, as JSON values, defaults resolved."""
  d = json.loads(config.to_json_best_effort())
  out = {k: d.get(k) for k in config_lib.IDENTITY_KEYS}
  if out['data_source'] is None:
    out['data_source'] = builders.default_source(out['dataset'])
  if out['image_size'] is None and out['dataset'] in builders.BUILDERS:
    out['image_size'] = min(c.size for c in builders.BUILDERS[out['dataset']].BUILDER_CONFIGS)
  return out


def check_identity(saved, requested, what: str) -> None:
  """Raises CheckpointError naming every model or data key where the configs differ."""
  a, b = identity(saved), identity(requested)
  diff = {k: (a[k], b[k]) for k in config_lib.IDENTITY_KEYS if a[k] != b[k]}
  if diff:
    keys = ', '.join(diff)
    detail = '; '.join(f'{k}: run has {v[0]!r}, requested {v[1]!r}' for k, v in diff.items())
    raise checkpoint.CheckpointError(
        f'{what}: the config disagrees with the run on {keys} ({detail}). These keys '
        'define the model or the data. Use the run\'s own config (evaluate.py --workdir '
        'alone), or another --workdir.')


def training_changes(saved, requested) -> dict:
  """{key: [run's value, requested value]} of the keys that change what is trained.

  Identity keys (checked by `check_identity`) and bookkeeping keys
  (config.BOOKKEEPING_KEYS, e.g. the progress bar) are left out.
  """
  a, b = config_lib.flat_items(saved), config_lib.flat_items(requested)
  skip = set(config_lib.IDENTITY_KEYS) | set(config_lib.BOOKKEEPING_KEYS)
  norm = lambda v: json.loads(json.dumps(v, default=list))
  return {k: [norm(a.get(k)), norm(b.get(k))] for k in sorted(set(a) | set(b))
          if k.split('.')[0] not in skip and norm(a.get(k)) != norm(b.get(k))}


HISTORY = 'config_history.jsonl'


def write_config(workdir: str, config) -> dict:
  """Saves config.json for a new run; on resume, checks the model and data keys.

  A config.json beside no checkpoint (a run that failed before saving) is
  replaced: nothing of that run is lost. On resume, returns the training
  keys the requested config changes ({key: [old, new]}, `training_changes`);
  `record_changes` then makes the run's record say so.
  """
  path = os.path.join(workdir, 'config.json')
  if os.path.exists(path) and checkpoint.has_checkpoint(workdir):
    saved = read_config(workdir)
    check_identity(saved, config, f'resuming {workdir}')
    return training_changes(saved, config)
  os.makedirs(workdir, exist_ok=True)
  with open(path, 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  return {}


def record_changes(workdir: str, step: int, changes: dict, config) -> None:
  """A resume at `step` changed training keys: config.json becomes the config in
  force, and <workdir>/config_history.jsonl gets {'step', 'changed': {key: [old, new]}},
  so the record always says what was trained, and from which step."""
  if not changes:
    return
  with open(os.path.join(workdir, HISTORY), 'a') as f:
    f.write(json.dumps({'step': int(step), 'changed': changes}) + '\n')
  tmp = os.path.join(workdir, 'config.json.tmp')
  with open(tmp, 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  os.replace(tmp, os.path.join(workdir, 'config.json'))


FAILED = 'FAILED.json'


def write_failure(workdir: str, step: int, saved_step: int, error: Exception) -> str:
  """Records a non-finite or diverged run in <workdir>/FAILED.json; returns its path."""
  path = os.path.join(workdir, FAILED)
  with open(path, 'w') as f:
    json.dump({'step': step, 'last_saved_step': saved_step, 'error': type(error).__name__,
               'message': str(error)}, f, indent=2)
  return path


def check_not_failed(workdir: str) -> None:
  """Refuses to resume a run that failed (FAILED.json beside its checkpoints).

  Its last checkpoints led to the failure (a diverging run's weights may
  already be blown up), so a rerun must not silently start from them. The
  error names both ways out. A failure before any checkpoint leaves nothing
  to resume: its record is moved aside (FAILED.json.old) and the run starts.
  """
  path = os.path.join(workdir, FAILED)
  if not os.path.exists(path):
    return
  if not checkpoint.has_checkpoint(workdir):
    os.replace(path, path + '.old')
    return
  with open(path) as f:
    failed = json.load(f)
  raise checkpoint.CheckpointError(
      f"{workdir}: this run failed at step {failed['step']} ({failed['error']}: "
      f"{failed['message'].split(';')[0]}); its checkpoints up to step "
      f"{failed['last_saved_step']} led there and may already be blown up, so it is not "
      f'resumed silently. Either start afresh in a new --workdir (or delete {workdir}), '
      f'or delete {path} to resume from step {failed["last_saved_step"]} anyway (e.g. with '
      'a lower --config.learning_rate; the change is recorded).')
