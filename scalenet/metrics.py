"""Metric writing: stdout, TensorBoard event files and metrics.jsonl in the workdir."""

from __future__ import annotations

import json
import math
import os

import numpy as np


class MetricWriter:
  """Writes scalar dicts; only process 0 writes (multi-host safe)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')

  def write(self, step: int, scalars: dict, prefix: str = '') -> None:
    if not self.enabled:
      return
    scalars = {f'{prefix}{k}': float(v) for k, v in scalars.items()}
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)
    self._jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
    self._jsonl.flush()

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


def check_finite(step0: int, losses) -> None:
  """Raises FloatingPointError naming the first step whose loss is not finite."""
  for i, loss in enumerate(np.asarray(losses)):
    if not math.isfinite(float(loss)):
      raise FloatingPointError(f'non-finite loss {float(loss)} at step {step0 + i}; '
                               'lower the learning rate or check the data.')


def format_scalars(scalars: dict) -> str:
  return ' '.join(f'{k}={v:.4g}' for k, v in scalars.items())
