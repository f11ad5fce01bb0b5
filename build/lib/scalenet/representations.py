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

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks",
  ICLR 2020 (Sec. 3: the scale-translation group acting on H = S x Z2).
"""

from __future__ import annotations

import dataclasses
import math

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
