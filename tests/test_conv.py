import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalenet import conv, dft_conv

_DN = ('NHWC', 'HWIO', 'NHWC')


def _lax(x, k, padding, stride=1, dilation=1):
  if isinstance(padding, int):
    padding = ((padding, padding), (padding, padding))
  return jax.lax.conv_general_dilated(x, k, (stride, stride), padding,
                                      rhs_dilation=(dilation, dilation),
                                      dimension_numbers=_DN)


def _data(shape_x, shape_k, seed=0):
  kx, kk = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kx, shape_x), jax.random.normal(kk, shape_k) / np.sqrt(
      np.prod(shape_k[:3]))


def _close(a, b, rtol=2e-5):
  """Max abs error relative to the reference's largest entry."""
  scale = float(jnp.max(jnp.abs(b)))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=rtol * max(scale, 1e-6))


# (H, W, Cin, Cout, k, padding, stride, dilation): odd and even sizes, the
# paddings of the zoo ('SAME', the reference's explicit k // 2, 'VALID'),
# kernels larger than the map, dilation as DSS uses it.
CASES = [
    (9, 9, 3, 4, 3, 'SAME', 1, 1),
    (8, 10, 2, 5, 5, 'SAME', 1, 1),
    (7, 7, 4, 3, 7, 3, 1, 1),
    (14, 14, 3, 6, 15, 7, 1, 1),
    (10, 9, 2, 3, 4, 'SAME', 1, 1),  # even kernel: asymmetric SAME padding
    (12, 12, 3, 2, 5, 'VALID', 1, 1),
    (11, 11, 2, 3, 3, ((2, 0), (1, 3)), 1, 1),
    (14, 14, 2, 3, 7, 'SAME', 1, 2),
    (7, 7, 2, 3, 7, 3 * 4, 1, 4),  # dilation 4 on 7x7: taps trimmed to 3x3
    (13, 12, 2, 3, 5, 'SAME', 2, 1),
]


@pytest.mark.parametrize('method', ['direct', 'dft', 'dft_separable'])
@pytest.mark.parametrize('h,w,cin,cout,k,padding,stride,dilation', CASES)
def test_matches_lax_with_gradients(method, h, w, cin, cout, k, padding, stride, dilation,
                                    monkeypatch):
  if method == 'dft_separable':  # every map here is small: 'dft' takes the 2-D stages
    monkeypatch.setattr(dft_conv, '_DFT_2D_MAX_PIXELS', 0)
    method = 'dft'
  assert dft_conv.dft_2d_stages(h, w) == (dft_conv._DFT_2D_MAX_PIXELS > 0)
  x, kern = _data((2, h, w, cin), (k, k, cin, cout))
  f = lambda x, kern: conv.conv2d(x, kern, padding=padding, stride=stride,
                                  dilation=dilation, method=method)
  ref = lambda x, kern: _lax(x, kern, padding, stride, dilation)
  y, y_ref = jax.jit(f)(x, kern), ref(x, kern)
  chex.assert_equal_shape((y, y_ref))
  _close(y, y_ref)
  # Gradients w.r.t. the input and the kernel, through a loss that weights
  # every output entry differently.
  wts = jax.random.normal(jax.random.key(1), y_ref.shape)
  g = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) * wts), argnums=(0, 1)))(x, kern)
  g_ref = jax.grad(lambda *a: jnp.sum(ref(*a) * wts), argnums=(0, 1))(x, kern)
  _close(g[0], g_ref[0])
  _close(g[1], g_ref[1])


def _clear_dft_caches():
  dft_conv._dft_matrices.cache_clear()
  dft_conv._dft_real_operators.cache_clear()


@pytest.mark.parametrize('max_pixels', [0, 10**6], ids=['separable', '2d'])
@pytest.mark.parametrize('padding', [((3, 1), (0, 2)), ((1, 3), (2, 2))])
def test_dft_length_is_the_shortest_without_wraparound(padding, max_pixels, monkeypatch):
  monkeypatch.setattr(dft_conv, '_DFT_2D_MAX_PIXELS', max_pixels)
  x, kern = _data((1, 9, 8, 2), (5, 5, 2, 3))
  want = _lax(x, kern, padding)
  _clear_dft_caches()
  _close(conv.conv2d(x, kern, padding=padding, method='dft'), want)
  # Negative control: one sample shorter and the circular correlation wraps
  # onto the image.
  length = dft_conv.dft_length
  monkeypatch.setattr(dft_conv, 'dft_length', lambda size, pads: length(size, pads) - 1)
  _clear_dft_caches()
  try:
    short = conv.conv2d(x, kern, padding=padding, method='dft')
  finally:
    _clear_dft_caches()
  assert float(jnp.max(jnp.abs(short - want))) > 1e-2


@pytest.mark.parametrize('pad_channels', [False, True])
def test_channel_padding_is_exact(pad_channels):
  x, kern = _data((2, 7, 7, 63), (3, 3, 63, 95))
  f = lambda x, kern: conv.conv2d(x, kern, padding=1, method='direct',
                                  pad_channels=pad_channels)
  _close(f(x, kern), _lax(x, kern, 1))
  g = jax.grad(lambda k: jnp.sum(f(x, k) ** 2))(kern)
  chex.assert_shape(g, kern.shape)
  _close(g, jax.grad(lambda k: jnp.sum(_lax(x, k, 1) ** 2))(kern))


def test_padded_channels():
  assert [conv.padded_channels(c) for c in (1, 3, 32, 63, 95, 252, 380, 33)] == [
      1, 3, 32, 64, 96, 256, 384, 33]


def test_trim_taps_keeps_the_function():
  # Dilation 8 on a 7x7 map: every tap but the middle one reads padding only.
  assert conv.trim_taps(7, 7, (24, 24), 1, 8) == (3, 1, (0, 0))
  assert conv.trim_taps(3, 9, (1, 1), 1, 1) == (0, 3, (1, 1))
  x, kern = _data((1, 7, 7, 2), (7, 7, 2, 3))
  _close(conv.conv2d(x, kern, padding=24, dilation=8), _lax(x, kern, 24, dilation=8))


def test_auto_choice_is_static_and_sensible():
  same = lambda n, k: conv.resolve_padding('SAME', (n, n), (k, k), 1, 1)
  # SESN's 15x15 kernels on 14x14 maps: spectral; 3x3 convs: direct.
  assert conv.choose_method((128, 14, 14, 32), (15, 15, 32, 252), same(14, 15),
                            backend='cpu') == 'dft'
  assert conv.choose_method((128, 28, 28, 32), (3, 3, 32, 32), same(28, 3),
                            backend='cpu') == 'direct'
  assert conv.choose_method((128, 14, 14, 32), (15, 15, 32, 252), same(14, 15),
                            backend='gpu') == 'direct'
  # The pick is made after trimming: dilation 4 on a 7x7 map keeps 3x3 taps.
  assert conv.auto_method((32, 7, 7, 63), (7, 7, 63, 95), 'SAME', 1, 4,
                          backend='cpu') == conv.choose_method(
                              (32, 7, 7, 63), (3, 3, 63, 95), ((1, 1), (1, 1)), 1, 4, 'cpu')
  # auto traces once and agrees with lax.
  x, kern = _data((2, 14, 14, 3), (15, 15, 3, 4))
  f = jax.jit(chex.assert_max_traces(
      lambda x, k: conv.conv2d(x, k, padding='SAME'), n=1))
  _close(f(x, kern), _lax(x, kern, 7))
  _close(f(x + 1.0, kern), _lax(x + 1.0, kern, 7))


def test_force_method():
  x, kern = _data((1, 9, 9, 2), (3, 3, 2, 2))
  for method in ('direct', 'dft'):
    with conv.force_method(method):
      y = jax.jit(lambda x, k: conv.conv2d(x, k))(x, kern)
    _close(y, _lax(x, kern, 1))
  with pytest.raises(ValueError, match='force_method'):
    with conv.force_method('wavelet'):
      pass


def test_bad_input():
  x, kern = jnp.zeros((1, 6, 6, 4)), jnp.zeros((3, 3, 4, 2))
  with pytest.raises(ValueError, match='channels'):
    conv.conv2d(x[..., :3], kern)
  with pytest.raises(ValueError, match='method'):
    conv.conv2d(x, kern, method='wavelet')
  with pytest.raises(ValueError, match='padding'):
    conv.conv2d(x, kern, padding='FULL')
  with pytest.raises(ValueError, match='rank 4'):
    conv.conv2d(x[0], kern)
