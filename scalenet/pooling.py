"""Non-overlapping 2-D max pooling (stride = window) with a cheap backward.

  max_pool(x, window, padding) == lax.reduce_window(x, -inf, max, window, window, pads)

The one max-pool entry point of the project: `padding` is 'VALID', 'SAME'
(as lax.reduce_window), an int (both sides of both axes, PyTorch's
MaxPool2d(padding=...)) or lax's ((top, bottom), (left, right)).

The equality holds for values and gradients alike: in a tie the first pixel
of the window in row-major order takes the whole gradient, as reduce_window's
(and PyTorch's MaxPool2d's) backward does.

Why not reduce_window itself: XLA:CPU runs the backward of a max
reduce_window as a variadic reduce-window that carries an iota per window
position alongside the values, a large part of a DSS training step
(benchmarks/README.md, pooling). Here the forward is the elementwise max of
the window's w*w strided slices and the backward routes the cotangent
through one equality mask per slice.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from scalenet import conv


def _slices(x: jax.Array, window: int) -> list[jax.Array]:
  """The window's w*w strided views of x [..., H, W, C] (H, W multiples of w), row-major."""
  return [x[..., i::window, j::window, :] for i in range(window) for j in range(window)]


def _max(views: list[jax.Array]) -> jax.Array:
  """Elementwise max of equally shaped arrays."""
  y = views[0]
  for v in views[1:]:
    y = jnp.maximum(y, v)
  return y


def _first_max_cotangents(views: list[jax.Array], y: jax.Array, g: jax.Array):
  """The cotangent of each view of y = _max(views): g where the view is the
  first (in list order) to equal y, else 0."""
  taken, parts = None, []
  for v in views:
    first = v == y if taken is None else (v == y) & ~taken
    taken = first if taken is None else taken | first
    parts.append(jnp.where(first, g, jnp.zeros((), g.dtype)))
  return parts


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _pool(x: jax.Array, window: int) -> jax.Array:
  return _max(_slices(x, window))


def _pool_fwd(x, window):
  y = _pool(x, window)
  return y, (x, y)


def _pool_bwd(window, res, g):
  x, y = res
  parts = _first_max_cotangents(_slices(x, window), y, g)
  # parts[i * w + j] is the cotangent of x[..., i::w, j::w, :]: interleave back.
  rows = [jnp.stack(parts[i * window:(i + 1) * window], axis=-2) for i in range(window)]
  return (jnp.stack(rows, axis=-4).reshape(x.shape),)


_pool.defvjp(_pool_fwd, _pool_bwd)

# Above this many pixels per cell the slices' program (w*w slices and masks)
# takes minutes to compile (a 14 x 14 window); cells reshaped onto one axis
# keep it small, with argmax (the first maximum) routing the gradient.
_MAX_SLICES = 16


def _cells(x: jax.Array, window: int) -> jax.Array:
  """[..., H, W, C] (H, W multiples of w) -> [..., H/w, W/w, w*w, C], cells row-major."""
  *lead, h, w, c = x.shape
  y = x.reshape(*lead, h // window, window, w // window, window, c)
  return jnp.moveaxis(y, -4, -3).reshape(*lead, h // window, w // window, window * window, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _pool_cells(x: jax.Array, window: int) -> jax.Array:
  return jnp.max(_cells(x, window), axis=-2)


def _pool_cells_fwd(x, window):
  return _pool_cells(x, window), x


def _pool_cells_bwd(window, x, g):
  cells = _cells(x, window)
  first = jnp.argmax(cells, axis=-2)  # the first maximum in row-major order
  hit = jnp.arange(window * window)[:, None] == first[..., None, :]
  dcells = jnp.where(hit, g[..., None, :], jnp.zeros((), g.dtype))
  *lead, ho, wo, _, c = dcells.shape
  d = dcells.reshape(*lead, ho, wo, window, window, c)
  return (jnp.moveaxis(d, -3, -4).reshape(x.shape),)


_pool_cells.defvjp(_pool_cells_fwd, _pool_cells_bwd)


def max_pool(x: jax.Array, window: int, padding='VALID') -> jax.Array:
  """Max pooling of [..., H, W, C] over window x window cells, stride = window.

  Args:
    x: [..., H, W, C] (any number of leading axes: batch, scale levels).
    window: cell size and stride.
    padding: 'VALID', 'SAME', an int, or ((top, bottom), (left, right)) of
      -inf padding. Cells are taken in floor mode: rows or columns that do
      not fill a cell are dropped, as reduce_window with 'VALID' after
      padding does.

  Returns:
    [..., H', W', C] with H' = (H + top + bottom) // window (likewise W').

  Raises:
    ValueError: x of rank < 3, window < 1, negative padding, or a map
      smaller than one cell.
  """
  if x.ndim < 3:
    raise ValueError(f'max_pool needs [..., H, W, C]; got shape {x.shape}.')
  if int(window) != window or window < 1:
    raise ValueError(f'max_pool window must be a positive integer; got {window!r}.')
  window = int(window)
  pads = conv.resolve_padding(padding, x.shape[-3:-1], (window, window), window, 1)
  (pt, pb), (pl, pr) = pads
  if min(pt, pb, pl, pr) < 0:
    raise ValueError(f'max_pool padding must be >= 0; got {pads}.')
  if pt or pb or pl or pr:
    widths = [(0, 0)] * (x.ndim - 3) + [(pt, pb), (pl, pr), (0, 0)]
    x = jnp.pad(x, widths, constant_values=-jnp.inf)
  ho, wo = x.shape[-3] // window, x.shape[-2] // window
  if ho < 1 or wo < 1:
    raise ValueError(f'max_pool: a {x.shape[-3]}x{x.shape[-2]} map (after padding) '
                     f'is smaller than one {window}x{window} cell.')
  if window == 1:
    return x
  x = x[..., :ho * window, :wo * window, :]
  return _pool(x, window) if window * window <= _MAX_SLICES else _pool_cells(x, window)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_over(x: jax.Array, axis: int) -> jax.Array:
  """jnp.max(x, axis) whose gradient goes wholly to the first maximum along `axis`.

  As PyTorch's `x.max(dim)[0]` (the reference models' max over scales), where
  jnp.max splits a tie's gradient evenly. Also cheaper on XLA:CPU: jnp.max's
  JVP builds an equality mask and a count over the whole input in the forward
  pass; here the forward is a chain of elementwise maxima and the masks are
  built in the backward only (benchmarks/README.md).
  """
  return _max_over_fwd(x, axis)[0]


def _along(x, axis):
  return [jax.lax.index_in_dim(x, i, axis, keepdims=False) for i in range(x.shape[axis])]


def _max_over_fwd(x, axis):
  y = _max(_along(x, axis))
  return y, (x, y)


def _max_over_bwd(axis, res, g):
  x, y = res
  return (jnp.stack(_first_max_cotangents(_along(x, axis), y, g), axis=axis),)


max_over.defvjp(_max_over_fwd, _max_over_bwd)
