"""Metrics: writing (stdout, TensorBoard, metrics.jsonl) and the finite/divergence guard."""

from __future__ import annotations

import errno
import json
import math
import os

import jax


class MetricWriter:
  """Writes scalar dicts; only process 0 writes (multi-host safe)."""

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
    """Opens the run's metrics; records past `resume_step` (logged by a run that
    was killed before its next checkpoint, and replayed now) are dropped first."""
    self.enabled, self.workdir = enabled, workdir
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter
      path = os.path.join(workdir, 'metrics.jsonl')
      _truncate_after(path, resume_step)
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                               purge_step=resume_step + 1 if resume_step else None)
      self._jsonl = open(path, 'a')

  def write(self, step: int, scalars: dict, prefix: str = '') -> None:
    """Writes one record. Raises OSError naming the workdir when its disk is full."""
    if not self.enabled:
      return
    scalars = {f'{prefix}{k}': float(v) for k, v in scalars.items()}
    try:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)
      self._jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
      self._jsonl.flush()
    except OSError as e:
      if e.errno != errno.ENOSPC:
        raise
      raise OSError(errno.ENOSPC, f'no space left on the disk of {self.workdir} while writing '
                    f'the metrics of step {step}: free some space and run the same command '
                    'again; it resumes from the latest checkpoint.') from e

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


def _truncate_after(path: str, step: int) -> None:
  """Rewrites metrics.jsonl without the records of steps after `step` (atomic)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f if l.strip()]
  kept = [l for l in lines if json.loads(l).get('step', 0) <= step]
  if len(kept) == len(lines):
    return
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.writelines(kept)
  os.replace(tmp, path)


def first_logged_loss(workdir: str):
  """The first training loss metrics.jsonl holds (the run's start), or None."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    for line in f:
      if line.strip() and 'train/loss' in (rec := json.loads(line)):
        return rec['train/loss']
  return None


class DivergenceError(FloatingPointError):
  """The loss grew past DIVERGENCE times its first value."""


# A loss this many times its first value is a diverged run (a cross-entropy
# starting near log(10) = 2.3 would be above 2e4).
DIVERGENCE = 1e4


class FiniteGuard:
  """Checks each step's loss and state before anything is saved.

  `add(step, metrics)` keeps a step's device metrics (no host sync);
  `check()` fetches every step added since the last check, in one sync, and
  raises for the first bad step. The loop calls it before every save, so a
  non-finite or diverged state is never saved and the good checkpoints stay.
  The divergence reference is `reference` (on resume: the run's first logged
  loss, `first_logged_loss`), else the first loss this process sees.

  Attributes:
    saved_step: the last step saved (named in the error).
  """

  def __init__(self, saved_step: int = 0, divergence: float = DIVERGENCE, reference=None):
    self.saved_step = saved_step
    self.divergence = divergence
    self.reference = None if reference is None else abs(float(reference))
    self._unchecked = []

  def add(self, step: int, metrics: dict) -> None:
    self._unchecked.append((step, {k: metrics[k] for k in ('loss', 'finite')}))

  def check(self) -> None:
    """Raises FloatingPointError (or DivergenceError) naming the first bad step."""
    host, self._unchecked = jax.device_get(self._unchecked), []
    kept = (f'Nothing after step {self.saved_step} was saved; the checkpoints up to it '
            'are kept.')
    for step, m in host:
      loss = float(m['loss'])
      if not math.isfinite(loss):
        raise FloatingPointError(f'non-finite loss {loss} at step {step}; lower the learning '
                                 f'rate or check the data. {kept}')
      if not m['finite']:
        raise FloatingPointError(f'non-finite parameters or optimizer state at step {step} '
                                 f'(loss {loss:.4g}); lower the learning rate. {kept}')
      if self.reference is None:
        self.reference = abs(loss)
      elif loss > self.divergence * self.reference:
        raise DivergenceError(
            f'diverged at step {step}: loss {loss:.4g} is more than {self.divergence:g} times '
            f'the first loss {self.reference:.4g}; lower the learning rate. {kept}')


def format_scalars(scalars: dict) -> str:
  return ' '.join(f'{k}={v:.4g}' for k, v in scalars.items())
