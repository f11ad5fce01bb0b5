"""Batch chunks that fit a cache budget: the policy shared by the ops that loop
over their batch on CPU (`deform.deform_conv`)."""

from __future__ import annotations

import numbers

import jax


def fitting_divisor(n: int, item_bytes: int, budget_bytes: int,
                    backend: str | None = None) -> int:
  """Items per chunk: all n off CPU; on CPU the largest divisor of n whose
  chunk (item_bytes per item) fits in budget_bytes, at least 1."""
  if (backend or jax.default_backend()) != 'cpu':
    return n
  fits = [c for c in range(1, n + 1) if n % c == 0 and c * item_bytes <= budget_bytes]
  return max(fits, default=1)


def check_chunk(chunk, n: int, name: str, items: str) -> int:
  """A chunk given by the caller, as an int: a positive divisor of n, else a ValueError."""
  if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1 or n % chunk:
    raise ValueError(f"{name} chunk must be 'auto' or a positive divisor of {items} {n}; "
                     f'got {chunk!r}.')
  return int(chunk)
