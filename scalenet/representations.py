"""How the scale group acts on each representation of a model: one protocol.

Every registered model exposes its representations in order, and for each the
action of a rescale L_s of the input on it:

  model.representations(x) -> {name: array}   # jittable, same keys as below
  model.scale_actions()    -> {name: Action}  # static, no input needed

Names: 'lift' (where the model has a lifting to a scale space), then for
every block i 'block{i}.conv' (the convolution's output, before nonlinearity,
normalisation and pooling) and 'block{i}' (the block's output), and 'logits'
last. `model(x)` is `representations(x)['logits']` computed without the rest.

Actions:
  * SPATIAL: a map [B, H, W, C]; L'_s rescales it spatially by s.
  * scale_space(r): a scale-space tensor [B, S, H, W, C] whose levels are r
    apart; L'_s rescales every level by s and shifts the scale axis by
    j = log_r(s) levels (defined only for s = r^j, j an integer).
  * INVARIANT: a vector [B, D]; L'_s is the identity.

`output_transform(action)` is L'_s as `equivariance_error` uses it: it takes
(lhs, y, factor), with lhs = fn(L_s x) and y = fn(x), and returns the pair
to compare, both restricted to where L'_s y is defined (elsewhere both are
0, adding nothing to either norm); comparing against a zero fill instead
would count every bias and BatchNorm shift of the background as an error.
`act(action, x, factor)` is L_s on an input of that kind.

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks",
  ICLR 2020 (Sec. 3: the scale-translation group acting on H = S x Z2).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from scalenet import _checks, transforms

KINDS = ('spatial', 'scale_space', 'invariant')

# |log_r(s) - round(log_r(s))| below this counts as an integer power.
_POWER_TOLERANCE = 1e-4


class FactorError(ValueError):
  """A scale factor the scale group cannot apply to a representation exactly."""


@dataclasses.dataclass(frozen=True)
class Action:
  """How a rescale by s of the input acts on one representation.

  Attributes:
    kind: 'spatial', 'scale_space' or 'invariant'.
    ratio: for 'scale_space', the scale ratio r > 1 between neighbouring levels
      (DSS: its integer base; SESN/DISCO: the ratio of consecutive basis scales).
  """
  kind: str
  ratio: float | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'Action kind must be one of {KINDS}; got {self.kind!r}.')
    if self.kind == 'scale_space':
      if self.ratio is None or not float(self.ratio) > 1:
        raise ValueError(f'a scale_space action needs a scale ratio > 1; got {self.ratio!r}.')
    elif self.ratio is not None:
      raise ValueError(f'a {self.kind} action takes no ratio; got {self.ratio!r}.')


SPATIAL = Action('spatial')
INVARIANT = Action('invariant')


def scale_space(ratio: float) -> Action:
  """The action on a scale-space tensor whose levels are `ratio` apart."""
  return Action('scale_space', float(ratio))


def level_shift(factor: float, ratio: float) -> int:
  """j with factor = ratio**j: how many levels a rescale by `factor` moves.

  Raises:
    FactorError (a ValueError): `factor` is not an integer power of `ratio`
      (naming the two nearest factors that are); never rounds.
  """
  factor, ratio = float(factor), float(ratio)
  if not (math.isfinite(factor) and factor > 0):
    raise ValueError(f'scale factor must be finite and > 0; got {factor!r}.')
  j = math.log(factor) / math.log(ratio)
  k = round(j)
  if abs(j - k) > _POWER_TOLERANCE:
    lo, hi = math.floor(j), math.ceil(j)
    raise FactorError(
        f'scale factor {factor:.6g} is not an integer power of this representation\'s '
        f'scale ratio {ratio:.6g} (log_r(s) = {j:.4f}); the nearest valid factors are '
        f'{ratio ** lo:.6g} (r^{lo}) and {ratio ** hi:.6g} (r^{hi}).')
  return int(k)


def smallest_exact_factor(actions: dict) -> float:
  """The factor < 1 closest to 1 that acts exactly on every representation.

  1/r for the smallest scale ratio r among the scale-space representations
  (all ratios of one model must be integer powers of it), 1/2 when the model
  has none (plain maps are acted on by any factor).
  """
  ratios = sorted({a.ratio for a in actions.values() if a.kind == 'scale_space'})
  if not ratios:
    return 0.5
  r = ratios[0]
  for other in ratios[1:]:
    level_shift(other, r)  # raises if the model mixes incommensurate ratios
  return 1.0 / r


__all__ = ['Action', 'FactorError', 'SPATIAL', 'INVARIANT', 'scale_space', 'level_shift',
           'smallest_exact_factor']


def output_transform(action: Action, rescale_fn: transforms.RescaleFn = transforms.DEFAULT):
  """L'_s for one representation, as an out_transform of `equivariance_error`.

  Args:
    action: how the scale group acts on the representation.
    rescale_fn: the L_s of the input, (x, factor) -> x'; applied spatially
      to the representation too, or, where it has `to_shape` (the
      resolution action, `transforms.Resolution`), resampling the
      representation to the grid of fn(L_s x).

  Returns:
    transform(lhs, y, factor) -> (lhs', L'_s y), both zero wherever L'_s y is
    not defined (outside the rescaled canvas when shrinking), and, for a
    scale-space action, restricted to the levels both sides share.
  """
  def transform(lhs, y, factor):
    if action.kind == 'invariant':
      return lhs, y
    rank = 5 if action.kind == 'scale_space' else 4
    shape = '[B, S, H, W, C]' if rank == 5 else '[B, H, W, C]'
    _checks.check_rank(y, rank, f'{action.kind} representation', shape)
    to_shape = getattr(rescale_fn, 'to_shape', None)  # the resolution action
    if to_shape is not None:
      ry, defined = to_shape(y, lhs.shape[-3:-1]), True
    else:
      ry = rescale_fn(y, factor)
      defined = rescale_fn(jnp.ones_like(y[:1]), factor) > 0.5
    if lhs.shape != ry.shape:
      raise ValueError(f'fn(L_s x) has shape {lhs.shape} but L\'_s fn(x) has {ry.shape}: '
                       'the representation does not follow its input\'s canvas.')
    lhs, ry = jnp.where(defined, lhs, 0), jnp.where(defined, ry, 0)
    if action.kind == 'spatial':
      return lhs, ry
    j, levels = level_shift(factor, action.ratio), y.shape[1]
    if abs(j) >= levels:
      raise FactorError(f'factor {float(factor):.6g} shifts the scale axis by {j} levels '
                       f'(ratio {action.ratio:.6g}) but the representation has only '
                       f'{levels}: no level is shared.')
    # Content of fn(x) at level k + |j| appears at level k of fn(L_s x) when
    # shrinking (j < 0), and the other way round when enlarging.
    if j >= 0:
      return lhs[:, j:], ry[:, :levels - j]
    return lhs[:, :levels + j], ry[:, -j:]
  return transform


def scale_space_transform(ratio: float, rescale_fn: transforms.RescaleFn = transforms.DEFAULT):
  """L'_s for scale-space outputs [B, S, H, W, C] whose levels are `ratio` apart."""
  return output_transform(scale_space(ratio), rescale_fn)


def action_for_output(y) -> Action:
  """The action implied by an output's rank: invariant [B, D], spatial [B, H, W, C]."""
  if y.ndim == 2:
    return INVARIANT
  if y.ndim == 4:
    return SPATIAL
  raise ValueError(
      f'no default action for outputs of shape {y.shape}; pass out_transform (e.g. '
      'scale_space_transform(ratio) for [B, S, H, W, C]).')


def act(action: Action, x: jax.Array, factor,
        rescale_fn: transforms.RescaleFn = transforms.DEFAULT) -> jax.Array:
  """The scale group acting on an input of kind `action`: L_s x.

  spatial: rescale_fn(x, factor); invariant: x; scale_space [B, S, H, W, C]:
  every level rescaled spatially, then the scale axis shifted by
  j = log_r(factor) levels (enlarging: level k + j holds what level k held;
  the levels no content reaches are zero). `factor` must be an integer power
  of the ratio (FactorError otherwise).
  """
  if action.kind == 'invariant':
    return x
  if action.kind == 'spatial':
    return rescale_fn(x, factor)
  _checks.check_rank(x, 5, 'scale-space input', '[B, S, H, W, C]')
  y = rescale_fn(x, factor)
  j, levels = level_shift(factor, action.ratio), x.shape[1]
  if abs(j) >= levels:
    raise FactorError(f'factor {float(factor):.6g} shifts all {levels} levels away.')
  pad = jnp.zeros_like(y[:, :abs(j)])
  return jnp.concatenate([pad, y[:, :levels - j]] if j >= 0 else [y[:, -j:], pad], axis=1)


def upsample_scale_space(z: jax.Array, factor: int = 2, ratio: int = 2) -> jax.Array:
  """Exact L_factor on a scale-space tensor whose levels are `ratio` apart:
  every level up-sampled `factor`x by nearest neighbour (the canvas grows),
  the scale axis shifted up by log_ratio(factor) levels, zeros below."""
  return act(scale_space(ratio), z, factor,
             lambda y, f: transforms.nearest_upsample(y, int(round(f))))
