import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from scalenet import deform_conv
from scalenet.deform import IMPLS, chunk_size
from tests import reference

_CONV_DN = ('NHWC', 'HWIO', 'NHWC')


def _conv(x, k, pad):
  return jax.lax.conv_general_dilated(x, k, (1, 1), ((pad, pad), (pad, pad)),
                                      dimension_numbers=_CONV_DN)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('groups,stride,pad,dil,with_mask',
                         [(1, 1, 1, 1, False), (2, 2, 2, 2, True), (1, 1, 0, 1, True)])
def test_matches_torchvision_semantics_reference(impl, groups, stride, pad, dil, with_mask):
  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], (2, 7, 6, 4))
  k = jax.random.normal(keys[1], (3, 3, 4, 3))
  ho = (7 + 2 * pad - 2 * dil - 1) // stride + 1
  wo = (6 + 2 * pad - 2 * dil - 1) // stride + 1
  # Offsets large enough to leave the image, so the zero border is exercised.
  off = 2.5 * jax.random.normal(keys[2], (2, ho, wo, groups, 9, 2))
  mask = jax.random.uniform(keys[3], (2, ho, wo, groups, 9)) if with_mask else None
  y = deform_conv(x, off, k, mask=mask, stride=stride, padding=pad, dilation=dil, impl=impl)
  chex.assert_shape(y, (2, ho, wo, 3))
  ref = reference.deform_conv(np.asarray(x, np.float64), np.asarray(off, np.float64),
                              np.asarray(k, np.float64),
                              None if mask is None else np.asarray(mask, np.float64),
                              stride, pad, dil)
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('impl', IMPLS)
def test_zero_offsets_equal_plain_conv(impl):
  x = jax.random.normal(jax.random.key(1), (2, 9, 9, 3))
  k = jax.random.normal(jax.random.key(2), (3, 3, 3, 4))
  y = deform_conv(x, jnp.zeros((2, 9, 9, 9, 2)), k, padding=1, impl=impl)
  np.testing.assert_allclose(y, _conv(x, k, 1), rtol=1e-5, atol=1e-5)


def test_integer_offsets_equal_shifted_conv():
  x = jax.random.normal(jax.random.key(3), (2, 10, 10, 3))
  k = jax.random.normal(jax.random.key(4), (3, 3, 3, 4))
  off = jnp.broadcast_to(jnp.array([1.0, -2.0]), (2, 10, 10, 9, 2))
  y = deform_conv(x, off, k, padding=1)
  # Reading x at (y + 1, x - 2) is reading the image shifted by (-1, +2).
  # Compared where no tap of the plain conv falls in its zero padding, since
  # there the deformable conv still reads real pixels of x.
  shifted = jnp.zeros_like(x).at[:, :-1, 2:].set(x[:, 1:, :-2])
  inner = (slice(None), slice(1, -1), slice(1, -1))
  np.testing.assert_allclose(y[inner], _conv(shifted, k, 1)[inner], rtol=1e-5, atol=1e-5)


def test_mask_scales_taps():
  x = jax.random.normal(jax.random.key(5), (1, 6, 6, 2))
  k = jax.random.normal(jax.random.key(6), (3, 3, 2, 2))
  off = jnp.zeros((1, 6, 6, 9, 2))
  y = deform_conv(x, off, k, mask=jnp.full((1, 6, 6, 9), 0.5), padding=1)
  np.testing.assert_allclose(y, 0.5 * _conv(x, k, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('impl', IMPLS)
def test_gradients(impl):
  keys = jax.random.split(jax.random.key(7), 4)
  x = jax.random.normal(keys[0], (1, 5, 5, 2))
  k = jax.random.normal(keys[1], (3, 3, 2, 2))
  # Keep sampling points away from integer grid lines, where bilinear
  # interpolation has kinks and finite differences are meaningless.
  off = jnp.round(jax.random.normal(keys[2], (1, 5, 5, 9, 2))) + 0.3
  mask = jax.random.uniform(keys[3], (1, 5, 5, 9))
  f = lambda x, off, mask, k: deform_conv(x, off, k, mask=mask, padding=1, impl=impl)
  with jax.debug_nans(False):
    check_grads(f, (x, off, mask, k), order=1, modes=['rev'], eps=1e-3, atol=2e-2, rtol=2e-2)


def test_bfloat16():
  x = jax.random.normal(jax.random.key(8), (1, 6, 6, 2)).astype(jnp.bfloat16)
  k = jax.random.normal(jax.random.key(9), (3, 3, 2, 2)).astype(jnp.bfloat16)
  y = deform_conv(x, jnp.zeros((1, 6, 6, 9, 2)), k, padding=1)
  assert y.dtype == jnp.bfloat16


def test_deform_conv_bad_input():
  x, k = jnp.zeros((1, 6, 6, 4)), jnp.zeros((3, 3, 4, 2))
  with pytest.raises(ValueError, match='rank 4'):
    deform_conv(x[0], jnp.zeros((1, 6, 6, 9, 2)), k, padding=1)
  with pytest.raises(ValueError, match='offsets must have shape'):
    deform_conv(x, jnp.zeros((1, 6, 6, 8, 2)), k, padding=1)
  with pytest.raises(ValueError, match='mask must have shape'):
    deform_conv(x, jnp.zeros((1, 6, 6, 9, 2)), k, mask=jnp.zeros((1, 6, 6, 8)), padding=1)
  with pytest.raises(ValueError, match='divide'):
    deform_conv(x, jnp.zeros((1, 6, 6, 3, 9, 2)), k, padding=1)
  with pytest.raises(ValueError, match='impl'):
    deform_conv(x, jnp.zeros((1, 6, 6, 9, 2)), k, padding=1, impl='cuda')


@pytest.mark.parametrize('groups,stride,pad,dil', [(1, 1, 1, 1), (2, 2, 2, 2)])
def test_custom_vjp_gradients_equal_autodiff(groups, stride, pad, dil):
  """impl='vjp' (hand-written backward) against autodiff of the same gather."""
  keys = jax.random.split(jax.random.key(10), 5)
  x = jax.random.normal(keys[0], (2, 8, 7, 4))
  k = jax.random.normal(keys[1], (3, 3, 4, 3))
  ho = (8 + 2 * pad - 2 * dil - 1) // stride + 1
  wo = (7 + 2 * pad - 2 * dil - 1) // stride + 1
  # Large offsets: many corners fall outside the image (the zero ring).
  off = 3.0 * jax.random.normal(keys[2], (2, ho, wo, groups, 9, 2))
  mask = jax.random.uniform(keys[3], (2, ho, wo, groups, 9))
  wts = jax.random.normal(keys[4], (2, ho, wo, 3))

  def loss(impl):
    return lambda *a: jnp.sum(wts * deform_conv(a[0], a[1], a[3], mask=a[2], stride=stride,
                                                padding=pad, dilation=dil, impl=impl))

  args = (x, off, mask, k)
  got = jax.jit(jax.grad(loss('vjp'), argnums=(0, 1, 2, 3)))(*args)
  want = jax.jit(jax.grad(loss('gather'), argnums=(0, 1, 2, 3)))(*args)
  for g, w in zip(got, want):
    chex.assert_equal_shape((g, w))
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(w))))


@pytest.mark.parametrize('impl', IMPLS)
def test_chunked_equals_whole_batch_and_reference(impl):
  """chunk=1 and 2 (lax.map + rematerialisation) against the whole batch at once,
  values and every gradient, and against the float64 reference."""
  keys = jax.random.split(jax.random.key(11), 5)
  x = jax.random.normal(keys[0], (4, 8, 7, 4))
  k = jax.random.normal(keys[1], (3, 3, 4, 3))
  off = 2.5 * jax.random.normal(keys[2], (4, 4, 4, 2, 9, 2))  # stride 2, pad 2, dil 2
  mask = jax.random.uniform(keys[3], (4, 4, 4, 2, 9))
  wts = jax.random.normal(keys[4], (4, 4, 4, 3))

  def loss(chunk):
    return lambda x, off, mask, k: jnp.sum(wts * deform_conv(
        x, off, k, mask=mask, stride=2, padding=2, dilation=2, impl=impl, chunk=chunk))

  args = (x, off, mask, k)
  whole = jax.jit(jax.value_and_grad(loss(4), argnums=(0, 1, 2, 3)))(*args)
  for chunk in (1, 2):
    y = deform_conv(x, off, k, mask=mask, stride=2, padding=2, dilation=2, impl=impl,
                    chunk=chunk)
    ref = reference.deform_conv(*(np.asarray(a, np.float64) for a in (x, off, k, mask)),
                                2, 2, 2)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    got = jax.jit(jax.value_and_grad(loss(chunk), argnums=(0, 1, 2, 3)))(*args)
    np.testing.assert_allclose(got[0], whole[0], rtol=1e-4)  # a sum of 192 terms
    for g, w in zip(got[1], whole[1]):
      chex.assert_equal_shape((g, w))
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(w))))


def test_chunk_size():
  # CPU: the largest divisor of the batch whose columns fit in 1 MiB.
  assert chunk_size(32, 903_168, 'cpu') == 1  # one DCN image at 28x28, 32 ch, 3x3
  assert chunk_size(32, 300_000, 'cpu') == 2  # 3 fit, but 3 does not divide 32
  assert chunk_size(6, 300_000, 'cpu') == 3
  assert chunk_size(8, 10, 'cpu') == 8
  assert chunk_size(4, 5 << 20, 'cpu') == 1  # even one image over budget: 1
  assert chunk_size(32, 903_168, 'gpu') == 32  # accelerators: the whole batch


def test_bad_chunk():
  x, k, off = jnp.zeros((4, 6, 6, 2)), jnp.zeros((3, 3, 2, 2)), jnp.zeros((4, 6, 6, 9, 2))
  for bad in (3, 0, -1, 2.0, True, 'all'):
    with pytest.raises(ValueError, match='chunk must be'):
      deform_conv(x, off, k, padding=1, chunk=bad)
