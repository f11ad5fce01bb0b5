"""Input validation shared by the pure ops: errors that name the problem."""

from __future__ import annotations

import numbers
from typing import Sequence

import jax.numpy as jnp


def check_rank(x, ranks: int | Sequence[int], name: str, layout: str) -> None:
  """Raises ValueError unless `x.ndim` is one of `ranks`."""
  ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
  if getattr(x, 'ndim', None) not in ranks:
    shape = getattr(x, 'shape', type(x).__name__)
    raise ValueError(
        f'{name} must have rank {" or ".join(map(str, ranks))} ({layout}); '
        f'got shape {shape}.')


def check_floating(x, name: str) -> None:
  """Raises TypeError unless `x` has a floating dtype (f32, bf16, ...)."""
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f'{name} must be a floating-point array; got dtype {x.dtype}. '
        'Cast images to float32 first (e.g. x.astype(jnp.float32) / 255).')


def integer_base(base, name: str = 'base') -> int:
  """Returns `base` as an int if it is a positive integer, else raises.

  Dilations base**k must be exact integers; truncating a fractional base
  (int(1.2**k) == 1 for small k) silently removes the scale structure.
  """
  if isinstance(base, bool) or not isinstance(base, numbers.Real):
    raise ValueError(f'{name} must be a positive integer; got {base!r}.')
  if float(base) != int(base) or int(base) < 1:
    raise ValueError(
        f'{name} must be a positive integer so that dilations {name}**k are '
        f'exact; got {base!r}. Fractional bases are not supported by dilated '
        'scale convolutions (use the SESN or SS-CNN models, whose filters '
        'are resampled at any scale).')
  return int(base)


def positive_int(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f'{name} must be a positive integer; got {value!r}.')
  return int(value)


def pair(value, name: str) -> tuple[int, int]:
  """An int or a pair of ints -> a pair of non-negative ints."""
  if isinstance(value, numbers.Integral):
    value = (value, value)
  value = tuple(value)
  if len(value) != 2 or not all(isinstance(v, numbers.Integral) and v >= 0 for v in value):
    raise ValueError(f'{name} must be a non-negative int or a pair of them; got {value!r}.')
  return int(value[0]), int(value[1])
