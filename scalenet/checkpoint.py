"""Orbax checkpoints of a run, and the lock that keeps it to one process.

A workdir holds:
- checkpoints/: the latest states, for resuming. Each is two items: 'model'
  (the model's parameters and batch statistics) and 'rest' (the optimizer
  state), so an evaluation restores 'model' alone, whatever the optimizer.
- best/: the parameters with the best validation accuracy so far (saved on
  strict improvement, as the published protocol) and a 'meta' item with its
  step, epoch and accuracy.
- config.json, config_history.jsonl, FAILED.json: the run's record
  (`run_record`).
- lock: the PID of the training process (`workdir_lock`).

Only finite states are saved (train.py checks before every save), and
restoring checks again. Restoring never deletes or overwrites anything: a
checkpoint that cannot be read raises CheckpointError naming it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx



class CheckpointError(RuntimeError):
  """A checkpoint is missing, corrupt, non-finite, or does not match the config."""


class WorkdirLocked(RuntimeError):
  """Another live process is training in this workdir."""


# What an evaluation restores: the model's parameters and batch statistics.
WEIGHTS = nnx.Any(nnx.Param, nnx.BatchStat)


# --- The lock --------------------------------------------------------------

def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Someone else's process: alive.
    return True
  return True


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Holds <workdir>/lock (this PID and host) for the duration of the block.

  A lock whose process is gone (same host, PID not running) is stale and is
  taken over. A lock from another host cannot be checked and is respected.

  Raises:
    WorkdirLocked: naming the holder's PID, while it runs.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'lock')
  me = {'pid': os.getpid(), 'host': socket.gethostname()}
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      try:
        with open(path) as f:
          holder = json.load(f)
      except (OSError, ValueError):
        holder = {}  # Being written, or garbage: treated as held.
      pid, host = holder.get('pid'), holder.get('host')
      if host == me['host'] and isinstance(pid, int) and not _alive(pid):
        with contextlib.suppress(FileNotFoundError):
          os.remove(path)  # Stale: its process is gone.
        continue
      raise WorkdirLocked(
          f'{workdir} is in use by process {pid} on {host} (lock file {path}). '
          'Wait for it, or use another --workdir; if that process is gone, remove '
          'the lock file.') from None
    with os.fdopen(fd, 'w') as f:
      json.dump(me, f)
    break
  else:
    raise WorkdirLocked(f'{workdir}: could not take the lock {path}; another process '
                        'is taking it at the same time.')
  try:
    yield path
  finally:
    with contextlib.suppress(OSError, ValueError):
      with open(path) as f:
        if json.load(f) == me:
          os.remove(path)


def has_checkpoint(workdir: str) -> bool:
  return any(os.path.isdir(os.path.join(workdir, d)) and os.listdir(os.path.join(workdir, d))
             for d in ('checkpoints', 'best'))


# --- Saving and restoring --------------------------------------------------

class _QuietReadOnly(logging.Filter):
  """Drops orbax's notices that a read-only manager is read-only (they read like errors)."""

  def filter(self, record):
    msg = record.getMessage()
    return not ('read only' in msg or 'read_only=True' in msg)


logging.getLogger('absl').addFilter(_QuietReadOnly())


def manager(workdir: str, *, keep: int = 3, save_every: int = 1, read_only: bool = False,
            subdir: str = 'checkpoints') -> ocp.CheckpointManager:
  """The latest checkpoints (subdir='checkpoints') or the best one (subdir='best', keep=1)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, save_interval_steps=save_every, create=not read_only,
      read_only=read_only, enable_async_checkpointing=not read_only)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, subdir)),
                               options=options)


def best_manager(workdir: str, read_only: bool = False) -> ocp.CheckpointManager:
  return manager(workdir, keep=1, read_only=read_only, subdir='best')


def _split(state):
  """A train state (nnx.State of (model, optimizer)) -> (weights, rest) pure dicts."""
  weights, rest = nnx.split_state(state[0], WEIGHTS, ...)
  rest = {'model': nnx.to_pure_dict(rest), 'optimizer': nnx.to_pure_dict(state[1])}
  return nnx.to_pure_dict(weights), {k: v for k, v in rest.items() if v}


def _target(pure):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      pure)


def all_finite(tree) -> bool:
  """True when every floating-point leaf of `tree` is finite (one host sync)."""
  leaves = [x for x in jax.tree.leaves(tree)
            if jnp.issubdtype(getattr(x, 'dtype', np.int32), jnp.inexact)]
  return bool(jax.device_get(_finite(leaves))) if leaves else True


@jax.jit
def _finite(leaves):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def save(mngr: ocp.CheckpointManager, step: int, state, force: bool = False) -> bool:
  """Saves a train state at `step` if the manager's interval (or `force`) says so."""
  weights, rest = _split(state)
  args = {'model': ocp.args.StandardSave(weights)}
  args.update({f'rest_{k}': ocp.args.StandardSave(v) for k, v in rest.items()})
  return mngr.save(step, args=ocp.args.Composite(**args), force=force)


def save_best(mngr: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  """Saves the model of a train state as the best so far, with `meta` (step, epoch, ...)."""
  weights, _ = _split(state)
  mngr.save(step, args=ocp.args.Composite(model=ocp.args.StandardSave(weights),
                                          meta=ocp.args.JsonSave(meta)), force=True)


def best_meta(mngr: ocp.CheckpointManager) -> dict | None:
  """The meta item of the best checkpoint, or None when there is none yet."""
  step = mngr.latest_step()
  if step is None:
    return None
  return dict(mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta'])


def _restore(mngr, step, args, what):
  try:
    return mngr.restore(step, args=ocp.args.Composite(**args))
  except Exception as e:  # orbax raises many types for unreadable or mismatched data
    raise CheckpointError(
        f'checkpoint {mngr.directory}/{step} cannot be restored ({type(e).__name__}: '
        f'{str(e)[:300]}). It is corrupt or from another model; it was left untouched. '
        f'Move it away to {what}, or use another --workdir.') from e


def _check_step(mngr, step):
  steps = mngr.all_steps()
  if step is None:
    return max(steps) if steps else None
  if step not in steps:
    raise CheckpointError(f'no checkpoint at step {step} in {mngr.directory}; '
                          f'available: {sorted(steps)}.')
  return step


def _check_finite(mngr, step, pure):
  if not all_finite(pure):
    raise CheckpointError(
        f'checkpoint {mngr.directory}/{step} holds non-finite values (a diverged run, '
        'saved by an older version); move it away to use an earlier one.')


def restore(mngr: ocp.CheckpointManager, state, step: int | None = None):
  """Restores a whole train state into the structure (and shardings) of `state`.

  Returns:
    (state, step); (state, 0) unchanged when there is no checkpoint and step is None.
  """
  step = _check_step(mngr, step)
  if step is None:
    return state, 0
  weights, rest = _split(state)
  args = {'model': ocp.args.StandardRestore(_target(weights))}
  args.update({f'rest_{k}': ocp.args.StandardRestore(_target(v)) for k, v in rest.items()})
  out = _restore(mngr, step, args, 'resume from an earlier step')
  _check_finite(mngr, step, out['model'])
  nnx.replace_by_pure_dict(state, {0: _merge(out['model'], out.get('rest_model', {})),
                                   1: out['rest_optimizer']})
  return state, step


def _merge(a: dict, b: dict) -> dict:
  out = dict(a)
  for k, v in b.items():
    out[k] = _merge(out[k], v) if isinstance(v, dict) and k in out else v
  return out


def restore_weights(mngr: ocp.CheckpointManager, model_state, step: int | None = None):
  """Restores only the parameters and batch statistics into a model's state.

  Args:
    mngr: manager() or best_manager() of a workdir.
    model_state: nnx.state(model) of a freshly built model (its structure and
      shardings are the restore target).
    step: a step of `mngr`; None: its latest.

  Returns:
    (model_state, step).

  Raises:
    CheckpointError: no checkpoint, an unreadable one, or non-finite values.
  """
  step = _check_step(mngr, step)
  if step is None:
    raise CheckpointError(f'no checkpoint in {mngr.directory}.')
  weights, _ = nnx.split_state(model_state, WEIGHTS, ...)
  out = _restore(mngr, step, {'model': ocp.args.StandardRestore(
      _target(nnx.to_pure_dict(weights)))}, 'evaluate an earlier one')
  _check_finite(mngr, step, out['model'])
  nnx.replace_by_pure_dict(model_state, out['model'])
  return model_state, step
