import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalenet import conv, winograd

_DN = ('NHWC', 'HWIO', 'NHWC')


def _lax(x, k, dilation=1):
  d = dilation
  return jax.lax.conv_general_dilated(x, k, (1, 1), ((d, d), (d, d)), rhs_dilation=(d, d),
                                      dimension_numbers=_DN)


def _data(b, h, w, cin, cout, seed=0):
  kx, kk, kw = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, (b, h, w, cin))
  k = jax.random.normal(kk, (3, 3, cin, cout)) / np.sqrt(9 * cin)
  wts = jax.random.normal(kw, (b, h, w, cout))  # weights every output differently
  return x, k, wts


def _close(a, b, rtol=2e-5):
  scale = float(jnp.max(jnp.abs(b)))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=rtol * max(scale, 1e-6))


# (B, H, W, Cin, Cout, dilation, chunk): even and odd sizes (padded to whole
# tiles inside), a 1x1 image, dilations 2 and 4 (polyphase, sizes not a
# multiple of 2d), explicit chunks of one and two (sub-)images.
CASES = [
    (4, 8, 8, 3, 5, 1, 'auto'),
    (4, 9, 7, 3, 5, 1, 1),
    (3, 5, 6, 2, 2, 1, 3),
    (1, 1, 1, 2, 3, 1, 'auto'),
    (2, 14, 14, 3, 4, 2, 2),
    (2, 7, 9, 4, 3, 4, 'auto'),
    (2, 13, 10, 2, 3, 2, 1),
]


@pytest.mark.parametrize('b,h,w,cin,cout,dilation,chunk', CASES)
def test_matches_lax_with_gradients(b, h, w, cin, cout, dilation, chunk):
  x, k, wts = _data(b, h, w, cin, cout)
  f = lambda x, k: winograd.conv3x3(x, k, dilation=dilation, chunk=chunk)
  ref = lambda x, k: _lax(x, k, dilation)
  y = jax.jit(f)(x, k)
  chex.assert_shape(y, (b, h, w, cout))
  _close(y, ref(x, k))
  g = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) * wts), argnums=(0, 1)))(x, k)
  g_ref = jax.grad(lambda *a: jnp.sum(ref(*a) * wts), argnums=(0, 1))(x, k)
  _close(g[0], g_ref[0])
  _close(g[1], g_ref[1])


def test_transforms_are_exact_in_float64():
  """A^T [(G g G^T) * (B^T d B)] A is the 2x2 correlation of a 4x4 tile, to float64 rounding,
  and the written-out adjoints are the transposes of the transforms."""
  rng = np.random.default_rng(0)
  d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
  bt, gm, at = (m.astype(np.float64) for m in (winograd._BT, winograd._G, winograd._AT))
  y = at @ ((gm @ g @ gm.T) * (bt @ d @ bt.T)) @ at.T
  want = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)])
  np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
  # Negative control: a wrong interpolation point breaks it.
  bad = bt.copy()
  bad[1, 2] = 2.0
  assert np.max(np.abs(at @ ((gm @ g @ gm.T) * (bad @ d @ bad.T)) @ at.T - want)) > 1e-3
  # <T x, y> == <x, T^T y> for the output and kernel transforms.
  m = jnp.asarray(rng.standard_normal((16, 2 * 3 * 2, 5)), jnp.float32)
  dy = jnp.asarray(rng.standard_normal((2, 6, 4, 5)), jnp.float32)
  np.testing.assert_allclose(jnp.vdot(winograd._output_transform(m, 2, 3, 2), dy),
                             jnp.vdot(m, winograd._output_transform_t(dy)), rtol=1e-5)
  k = jnp.asarray(rng.standard_normal((3, 3, 2, 5)), jnp.float32)
  du = jnp.asarray(rng.standard_normal((16, 2, 5)), jnp.float32)
  np.testing.assert_allclose(jnp.vdot(winograd._kernel_transform(k), du),
                             jnp.vdot(k, winograd._kernel_transform_t(du)), rtol=1e-5)


def test_chunk_size():
  x, k, _ = _data(4, 6, 6, 2, 3)
  _close(winograd.conv3x3(x, k, chunk=np.int64(2)), _lax(x, k))
  # 28x28 with 32 channels: 196 tiles x 16 x 32 x 4 B = 401,408 B per image.
  assert winograd.chunk_size(128, 196, 32, backend='cpu') == 8
  assert winograd.chunk_size(12, 196, 32, backend='cpu') == 12
  assert winograd.chunk_size(7, 10**6, 64, backend='cpu') == 1
  assert winograd.chunk_size(128, 196, 32, backend='gpu') == 128


def test_conv2d_path(monkeypatch):
  x, k, _ = _data(2, 10, 10, 3, 4)
  calls = []
  real = winograd.conv3x3
  monkeypatch.setattr(winograd, 'conv3x3', lambda *a, **kw: calls.append(kw) or real(*a, **kw))
  for d in (1, 2, 12):  # dilation 12 > the map: the whole kernel still goes to Winograd
    _close(conv.conv2d(x, k, dilation=d, method='winograd'), _lax(x, k, d))
  assert [c['dilation'] for c in calls] == [1, 2, 12]
  # force_method('winograd'): 3x3 'SAME' convs take it, the others the cost model's pick.
  calls.clear()
  k5 = jax.random.normal(jax.random.key(3), (5, 5, 3, 4))
  f = lambda x, k, k5: (conv.conv2d(x, k), conv.conv2d(x, k5), conv.conv2d(x, k, stride=2))
  with conv.force_method('winograd'):
    y3, y5, ys = jax.jit(f)(x, k, k5)
  assert len(calls) == 1
  _close(y3, _lax(x, k))
  _close(y5, jax.lax.conv_general_dilated(x, k5, (1, 1), 'SAME', dimension_numbers=_DN))
  _close(ys, jax.lax.conv_general_dilated(x, k, (2, 2), 'SAME', dimension_numbers=_DN))


def test_half_precision_input():
  """bfloat16 in, bfloat16 out, computed in float32: values and gradients."""
  x, k, wts = _data(2, 6, 6, 3, 4)
  xb, kb = x.astype(jnp.bfloat16), k.astype(jnp.bfloat16)
  f = lambda x, k: winograd.conv3x3(x, k)
  y = f(xb, kb)
  assert y.dtype == jnp.bfloat16
  ref = _lax(xb.astype(jnp.float32), kb.astype(jnp.float32))
  _close(y.astype(jnp.float32), ref, rtol=1e-2)
  gx, gk = jax.grad(lambda *a: jnp.sum(f(*a).astype(jnp.float32) * wts), argnums=(0, 1))(xb, kb)
  assert gx.dtype == gk.dtype == jnp.bfloat16
  gx_ref, gk_ref = jax.grad(lambda *a: jnp.sum(_lax(*a) * wts), argnums=(0, 1))(
      xb.astype(jnp.float32), kb.astype(jnp.float32))
  _close(gx.astype(jnp.float32), gx_ref, rtol=1e-2)
  _close(gk.astype(jnp.float32), gk_ref, rtol=1e-2)


def test_bad_input():
  x, k = jnp.zeros((2, 6, 6, 4)), jnp.zeros((3, 3, 4, 2))
  with pytest.raises(ValueError, match='3x3 kernel'):
    winograd.conv3x3(x, jnp.zeros((5, 5, 4, 2)))
  with pytest.raises(ValueError, match='channels'):
    winograd.conv3x3(x[..., :3], k)
  with pytest.raises(ValueError, match='rank 4'):
    winograd.conv3x3(x[0], k)
  with pytest.raises(ValueError, match='dilation'):
    winograd.conv3x3(x, k, dilation=0)
  for chunk in (3, 0, 1.0, True, 'half'):
    with pytest.raises(ValueError, match='chunk'):
      winograd.conv3x3(x, k, chunk=chunk)
  for kwargs in ({'stride': 2}, {'padding': 'VALID'}, {'padding': 2}):
    with pytest.raises(ValueError, match="'winograd' computes 3x3 'SAME'"):
      conv.conv2d(x, k, method='winograd', **kwargs)
  with pytest.raises(ValueError, match="'winograd' computes 3x3 'SAME'"):
    conv.conv2d(x, jnp.zeros((5, 5, 4, 2)), method='winograd')
