"""Orbax checkpoints of the training state, with automatic resume.

The state is saved as a pure dict of arrays; the run's config goes beside it
(config.json) so a resumed or evaluated run can check it is restoring the
same model. Restoring never deletes or overwrites anything: a checkpoint that
cannot be read raises CheckpointError naming it.
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp
from flax import nnx


class CheckpointError(RuntimeError):
  """A checkpoint is missing, corrupt, or does not match the config."""


# Keys whose change makes an old checkpoint unusable for this run.
IDENTITY_KEYS = ('model_name', 'model', 'dataset', 'image_size')


def manager(workdir: str, *, keep: int = 3, save_every: int = 1,
            read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, save_interval_steps=save_every, create=not read_only,
      read_only=read_only, enable_async_checkpointing=not read_only)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')),
                               options=options)


def _identity(config) -> dict:
  d = json.loads(config.to_json_best_effort())
  return {k: d.get(k) for k in IDENTITY_KEYS}


def write_config(workdir: str, config) -> None:
  """Saves config.json on the first run; on resume, checks the model is the same."""
  path = os.path.join(workdir, 'config.json')
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    ours = _identity(config)
    diff = {k: (saved.get(k), ours[k]) for k in IDENTITY_KEYS if saved.get(k) != ours[k]}
    if diff:
      raise CheckpointError(
          f'{workdir} holds a run with a different model or data set {diff} '
          '(saved, requested); use another --workdir, or remove that run first.')
    return
  os.makedirs(workdir, exist_ok=True)
  with open(path, 'w') as f:
    f.write(config.to_json_best_effort(indent=2))


def save(mngr: ocp.CheckpointManager, step: int, state, force: bool = False) -> bool:
  return mngr.save(step, args=ocp.args.StandardSave(nnx.to_pure_dict(state)), force=force)


def restore(mngr: ocp.CheckpointManager, state, step: int | None = None):
  """Restores into the structure (and shardings) of `state`; returns (state, step).

  Returns (state, 0) unchanged when there is no checkpoint and step is None.
  """
  steps = mngr.all_steps()
  if step is None:
    if not steps:
      return state, 0
    step = max(steps)
  elif step not in steps:
    raise CheckpointError(f'no checkpoint at step {step} in {mngr.directory}; '
                          f'available: {sorted(steps)}.')
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      nnx.to_pure_dict(state))
  try:
    restored = mngr.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as e:  # orbax raises many types for unreadable or mismatched data
    raise CheckpointError(
        f'checkpoint {mngr.directory}/{step} cannot be restored ({type(e).__name__}: '
        f'{str(e)[:300]}). It is corrupt or from another model; it was left untouched. '
        'Move it away to resume from an earlier step, or use another --workdir.') from e
  nnx.replace_by_pure_dict(state, restored)
  return state, step
