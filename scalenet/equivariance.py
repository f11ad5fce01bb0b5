"""Equivariance error: how far fn commutes with the rescale operator L_s.

  Delta(s) = mean_images ||fn(L_s x) - L'_s fn(x)||^2 / ||L'_s fn(x)||^2

(reduction='mean', the default; 'pooled' takes both norms over the whole
batch, a ratio of sums that stays moderate when one image's reference is all
but zero). L_s is the project's rescale operator (`transforms.rescale`, or
the run's `RescaleSpec`); L'_s is how the scale group acts on fn's output
(`representations.Action`): identity for vectors (invariance), a spatial
rescale for maps, a rescale plus a shift of the scale axis by log_r(s) levels
for scale-space tensors (only the levels both sides share are compared).

What Delta measures, and on what canvas: x is a batch of images on their own
canvas (digits on black for scale-MNIST). L_s x shrinks or enlarges them
about the centre on that canvas, which for digits on black is the true
rescaled digit. Both sides are compared only where L'_s fn(x) is defined, the
rescaled canvas when shrinking, never against a zero fill. So an exactly
equivariant map scores ~0 (the affine `2 x + 0.5` scores < 1e-10 at s = 1/2,
2^(-1/3), 2 on scale-MNIST digits, tests/test_equivariance.py), and what
remains for a network is its own: the grid and kernel sizes it works at,
pooling strides, border effects of its padding, and the levels at the end of
its scale axis.

References:
  Sosnovik, Szmaja & Smeulders, "Scale-Equivariant Steerable Networks",
  ICLR 2020 (Sec. 6.1: the normalised equivariance error, layer by layer).
  Sosnovik, Moskalev & Smeulders, "DISCO: accurate Discrete Scale
  Convolutions", BMVC 2021.
"""

from __future__ import annotations

from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scalenet import representations as reps
from scalenet import transforms

REDUCTIONS = ('mean', 'pooled')


def _check_reduction(reduction: str) -> None:
  if reduction not in REDUCTIONS:
    raise ValueError(f'reduction must be one of {REDUCTIONS}; got {reduction!r}.')


def _squared_norms(lhs, ref):
  """Per image (||lhs - ref||^2, ||ref||^2): two [B] float32 arrays."""
  lhs, ref = lhs.astype(jnp.float32), ref.astype(jnp.float32)
  axes = tuple(range(1, ref.ndim))
  return jnp.sum((lhs - ref) ** 2, axis=axes), jnp.sum(ref ** 2, axis=axes)


def equivariance_terms(fn: Callable[[jax.Array], jax.Array], x: jax.Array, factor,
                       *, out_transform=None, rescale_fn=transforms.DEFAULT
                       ) -> tuple[jax.Array, jax.Array]:
  """Per image: (||fn(L_s x) - L'_s fn(x)||^2, ||L'_s fn(x)||^2), two [B] arrays.

  Concatenate over chunks of a data set, then `reduce_terms`. Arguments as
  for `equivariance_error`.
  """
  y = fn(x)
  lhs = fn(rescale_fn(x, factor))
  if out_transform is None:
    out_transform = reps.output_transform(reps.action_for_output(y), rescale_fn)
  return _squared_norms(*out_transform(lhs, y, factor))


def _ratio(num, den):
  """num / den, NaN where den == 0: the relative error of an all-zero reference
  (e.g. a 2x2 feature map rescaled by 1/3) is undefined, not 1e30."""
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)


def reduce_terms(num, den, reduction: str = 'mean'):
  """Delta from per-image terms: mean of ratios, or ratio of sums ('pooled')."""
  _check_reduction(reduction)
  if reduction == 'mean':
    return jnp.mean(_ratio(num, den))
  return _ratio(jnp.sum(num), jnp.sum(den))


def equivariance_error(fn: Callable[[jax.Array], jax.Array], x: jax.Array, factor,
                       *, out_transform=None, reduction: str = 'mean',
                       rescale_fn=transforms.DEFAULT) -> jax.Array:
  """Normalised equivariance error of `fn` under rescaling by `factor`.

  Args:
    fn: batched function of `x` (a layer, a model's logits).
    x: inputs [B, H, W, C] (or [B, S, H, W, C] for scale-space layers).
    factor: scale factor s > 0.
    out_transform: callable (lhs, y, factor) -> (lhs', L'_s y) where
      lhs = fn(L_s x) and y = fn(x), e.g.
      `reps.output_transform(representations.scale_space(r))`. Default:
      invariance for [B, D] outputs, a spatial rescale for [B, H, W, C].
    reduction: 'mean' (of per-image ratios) or 'pooled' (ratio of batch sums).
    rescale_fn: L_s, (x, factor) -> x'; default `transforms.DEFAULT`.

  Returns:
    Scalar float32: the relative squared error; NaN (undefined) when the
    reference L'_s fn(x) of an image ('mean') or of the batch ('pooled') is
    identically zero.
  """
  _check_reduction(reduction)  # before the (costly) forward passes
  num, den = equivariance_terms(fn, x, factor, out_transform=out_transform,
                                rescale_fn=rescale_fn)
  return reduce_terms(num, den, reduction)


def assert_equivariant(fn: Callable[[jax.Array], jax.Array], x: jax.Array, factor, *,
                       in_action: reps.Action = reps.SPATIAL,
                       out_action: reps.Action | None = None,
                       rescale_fn=transforms.DEFAULT, atol: float = 1e-5,
                       reduction: str = 'mean') -> float:
  """Asserts that fn commutes with rescaling: Delta(s) <= atol; returns Delta.

  The library's equivariance check (as e3nn-jax's `assert_equivariant`):
  L_s acts on x as `in_action` says (`reps.act`: a spatial rescale, or
  a rescale plus a level shift for scale-space inputs) and on fn's output as
  `out_action` says (default: from its rank), with the spatial operator
  `rescale_fn` on both sides; Delta is `equivariance_error`'s.

  Raises:
    AssertionError: Delta is above atol, or undefined (NaN), naming both.
  """
  out = None if out_action is None else reps.output_transform(out_action, rescale_fn)
  delta = float(equivariance_error(
      fn, x, factor, out_transform=out, reduction=reduction,
      rescale_fn=lambda v, f: reps.act(in_action, v, f, rescale_fn)))
  if not delta <= atol:
    raise AssertionError(f'not equivariant at s = {float(factor):.6g}: Delta = {delta:.4g} '
                         f'> atol {atol:g}.')
  return delta


def equivariance_curve(fn, x, factors: Iterable[float], *, out_transform=None,
                       rescale_fn=transforms.DEFAULT) -> np.ndarray:
  """Delta(s) for each factor: a float64 numpy array, one entry per factor."""
  return np.array([float(equivariance_error(fn, x, s, out_transform=out_transform,
                                            rescale_fn=rescale_fn)) for s in factors])


@jax.jit(static_argnums=(0, 3))
def _eval_representations(graphdef, state, x, preprocess):
  m = nnx.merge(graphdef, state)
  m.eval()
  return m.representations(x if preprocess is None else preprocess(x))


def representation_fn(model: nnx.Module, preprocess=None):
  """A jitted pure x -> model.representations(preprocess(x)), in inference mode.

  The model is split and merged, so switching the copy to eval mode leaves
  the caller's model (and its BatchNorm statistics) untouched. One compiled
  program per (model structure, input shape, preprocess): calls on the same
  model and shapes, from here or from `layerwise_equivariance`, compile once.
  """
  graphdef, state = nnx.split(model)
  return lambda x: _eval_representations(graphdef, state, x, preprocess)


def _off_grid(actions: dict, factor) -> dict:
  """{name: reason} for the representations `factor` cannot act on exactly."""
  reasons = {}
  for name, a in actions.items():
    if a.kind == 'scale_space':
      try:
        reps.level_shift(factor, a.ratio)
      except reps.FactorError as e:
        reasons[name] = str(e)
  return reasons


def check_takes_input(model: nnx.Module, x, factor, rescale_fn, fn=None) -> None:
  """Under an action that changes the input's grid (`transforms.Resolution`),
  raises ValueError unless the model runs on L_s x (shapes only, no compute)."""
  if getattr(rescale_fn, 'to_shape', None) is None:
    return
  small = jax.ShapeDtypeStruct(rescale_fn(jnp.zeros((1, *x.shape[1:]), jnp.float32),
                                          factor).shape, jnp.float32)
  try:
    jax.eval_shape(fn or representation_fn(model), small)
  except Exception as e:  # any failure to trace at that size
    raise ValueError(
        f'{type(model).__name__} does not take {small.shape[1]} x {small.shape[2]} inputs '
        f'(those of the resolution action at s = {float(factor):.4g} on '
        f'{x.shape[1]} x {x.shape[2]} images): {type(e).__name__}: {str(e).splitlines()[0]} '
        '- measure it under the canvas rescale (transforms.DEFAULT) instead.') from None


def layerwise_terms(model: nnx.Module, x, factor, *, rescale_fn=transforms.DEFAULT,
                    batch_size: int | None = None, fn=None, preprocess=None,
                    skip_off_grid: bool = False) -> tuple[dict, dict]:
  """Per-image terms of every representation, in chunks of `batch_size`.

  Returns:
    ({name: (num [N], den [N])}, {name: reason}): the second dict names the
    representations `factor` cannot act on exactly (a scale-space tensor
    whose ratio it is not a power of, or which it shifts past every level);
    they are measured by nobody. Without `skip_off_grid` any such
    representation raises FactorError instead, before any forward pass where
    it can be known.

  `fn` (from `representation_fn(model, preprocess)`) may be passed to reuse
  one compiled function across factors. Other arguments as for
  `layerwise_equivariance`.
  """
  return _terms_by_factor(model, x, [factor], rescale_fn=rescale_fn, batch_size=batch_size,
                          fn=fn, preprocess=preprocess, skip_off_grid=skip_off_grid)[0]


@jax.jit(static_argnums=(2, 3, 4))
def _compared(lhs: dict, y: dict, factor, rescale_fn, actions: tuple) -> dict:
  """{name: _squared_norms(L'_s pair)} for each (name, action) of `actions`:
  every representation's output transform and norms in one compiled program."""
  return {name: _squared_norms(*reps.output_transform(a, rescale_fn)(lhs[name], y[name], factor))
          for name, a in actions}


def _shifted_past(actions: dict, lhs: dict, y: dict, factor, rescale_fn) -> dict:
  """{name: reason} of the representations whose levels `factor` shifts past
  every level (a FactorError of the output transform: a matter of shapes,
  found by tracing, nothing computed)."""
  reasons = {}
  for name, a in actions.items():
    try:
      jax.eval_shape(lambda v, w, a=a: reps.output_transform(a, rescale_fn)(v, w, factor),
                     lhs[name], y[name])
    except reps.FactorError as e:
      reasons[name] = str(e)
  return reasons


def _padded(xb: jax.Array, size: int) -> jax.Array:
  """xb zero-padded to `size` images: a last, short chunk reuses the full
  chunks' compiled programs (inference is per image; its padded terms are
  dropped)."""
  return jnp.pad(xb, ((0, size - len(xb)),) + ((0, 0),) * (xb.ndim - 1))


def _terms_by_factor(model, x, factors, *, rescale_fn, batch_size, fn, preprocess,
                     skip_off_grid) -> list[tuple[dict, dict]]:
  """`layerwise_terms` of every factor, chunk by chunk: each chunk's fn(x) is
  computed once and compared with fn(L_s x) at every factor."""
  actions = model.scale_actions()
  off_grid = []
  for factor in factors:
    transforms.check_factor(factor)
    off = _off_grid(actions, factor)
    if off and not skip_off_grid:
      raise reps.FactorError(next(iter(off.values())))
    off_grid.append(off)
  fn = fn or representation_fn(model, preprocess)
  x = jnp.asarray(x)
  for factor in factors:
    check_takes_input(model, x, factor, rescale_fn, fn)
  batch_size = batch_size or len(x)
  chunks = [[] for _ in factors]
  for i in range(0, len(x), batch_size):
    xb = x[i:i + batch_size]
    if i:  # a short last chunk takes the full chunks' shape
      xb = _padded(xb, batch_size)
    y = fn(xb)
    if set(y) != set(actions):  # (jit returns dicts with sorted keys)
      raise ValueError(f'{type(model).__name__}.representations gives {sorted(y)} but '
                       f'scale_actions declares {sorted(actions)}.')
    for k, factor in enumerate(factors):
      lhs = fn(rescale_fn(xb, factor))
      if not i:  # shifts past every level of a representation: the same for every chunk
        past = _shifted_past({n: a for n, a in actions.items() if n not in off_grid[k]},
                             lhs, y, factor, rescale_fn)
        if past and not skip_off_grid:
          raise reps.FactorError(next(iter(past.values())))
        off_grid[k].update(past)
      kept = tuple((n, a) for n, a in actions.items() if n not in off_grid[k])
      chunks[k].append(_compared({n: lhs[n] for n, _ in kept}, {n: y[n] for n, _ in kept},
                                 factor, rescale_fn, kept))
  out = []
  for k in range(len(factors)):
    terms = {name: tuple(np.concatenate([np.asarray(c[name][j]) for c in chunks[k]])[:len(x)]
                         for j in range(2))
             for name in actions if name not in off_grid[k]}
    out.append((terms, off_grid[k]))
  return out


def layerwise_equivariance(model: nnx.Module, x, factor, *, reduction: str = 'mean',
                           rescale_fn=transforms.DEFAULT, batch_size: int | None = None,
                           preprocess=None) -> dict[str, float]:
  """Delta(s) of every representation of `model`, in the model's order.

  Args:
    model: a registered model (any with `representations` and `scale_actions`);
      evaluated in inference mode (BatchNorm running statistics), unchanged.
    x: images [N, H, W, C] as L_s sees them (for digits: background 0).
    factor: scale factor s; for scale-space representations an integer power
      of their scale ratio (else ValueError naming the nearest valid factors).
    reduction: 'mean' or 'pooled' (see `equivariance_error`).
    rescale_fn: L_s (default `transforms.DEFAULT`; a run uses its own spec).
    batch_size: chunk size of the forward passes (default: all at once).
    preprocess: applied to x and L_s x before the model (e.g. the input
      normalisation), so L_s acts on the images, not on normalised values.

  Returns:
    {'lift': ..., 'block0.conv': ..., 'block0': ..., ..., 'logits': ...}:
    Python floats, NaN where the reference is identically zero.
  """
  _check_reduction(reduction)
  terms, _ = layerwise_terms(model, x, factor, rescale_fn=rescale_fn, batch_size=batch_size,
                             preprocess=preprocess)
  return {name: float(reduce_terms(num, den, reduction)) for name, (num, den) in terms.items()}


def layerwise_deltas(model: nnx.Module, x, factor, *, reduction: str = 'mean',
                     rescale_fn=transforms.DEFAULT, preprocess=None) -> dict[str, jax.Array]:
  """Delta(s) of every representation as arrays: jittable and differentiable.

  For an equivariance penalty in a loss (`nnx.grad`, `nnx.jit`): the model
  runs as it is (in train mode, BatchNorm uses batch statistics), on the
  whole batch at once. `factor` must be a Python number (it picks the level
  shift of scale-space representations); a representation it cannot act on
  exactly raises FactorError. Same Delta as `layerwise_equivariance` for a
  model in eval mode.

  Returns:
    {name: scalar float32 array}, in the model's order.
  """
  _check_reduction(reduction)
  actions = model.scale_actions()
  transforms.check_factor(factor)
  off_grid = _off_grid(actions, factor)
  if off_grid:
    raise reps.FactorError(next(iter(off_grid.values())))
  pre = (lambda v: v) if preprocess is None else preprocess
  check_takes_input(model, x, factor, rescale_fn, representation_fn(model, preprocess))
  y = model.representations(pre(x))
  lhs = model.representations(pre(rescale_fn(x, factor)))
  return {name: reduce_terms(*_squared_norms(*reps.output_transform(a, rescale_fn)(
      lhs[name], y[name], factor)), reduction) for name, a in actions.items()}


def layerwise_curves(model: nnx.Module, x, factors: Iterable[float], *,
                     reduction: str = 'mean', rescale_fn=transforms.DEFAULT,
                     batch_size: int | None = None, preprocess=None) -> tuple[dict, dict]:
  """Layer-wise Delta for several factors, compiling the model once.

  Every representation is measured at every factor it can take; the others
  (a scale-space tensor whose ratio the factor is not a power of) are left
  out, never rounded, and their reasons returned.

  Returns:
    ({factor: {name: Delta}}, {factor: {name: reason}}), in the model's order.
  """
  _check_reduction(reduction)
  factors = list(factors)
  curves, skipped = {}, {}
  measured = _terms_by_factor(model, x, factors, rescale_fn=rescale_fn, batch_size=batch_size,
                              fn=None, preprocess=preprocess, skip_off_grid=True)
  for f, (terms, off_grid) in zip(factors, measured):
    if terms:
      curves[f] = {name: float(reduce_terms(num, den, reduction))
                   for name, (num, den) in terms.items()}
    if off_grid:
      skipped[f] = off_grid
  return curves, skipped
