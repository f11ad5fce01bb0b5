"""Slow, plainly written numpy references the fast ops are checked against."""

import math

import numpy as np


def conv2d(x, k, dilation=1, stride=1, pad=None):
  """x [H, W, Cin], k [kh, kw, Cin, Cout]; zero padding; SAME if pad is None."""
  h, w, _ = x.shape
  kh, kw, _, cout = k.shape
  if pad is None:
    ho, wo = -(-h // stride), -(-w // stride)
    ph = max((ho - 1) * stride + (kh - 1) * dilation + 1 - h, 0) // 2
    pw = max((wo - 1) * stride + (kw - 1) * dilation + 1 - w, 0) // 2
  else:
    ph, pw = pad
    ho = (h + 2 * ph - (kh - 1) * dilation - 1) // stride + 1
    wo = (w + 2 * pw - (kw - 1) * dilation - 1) // stride + 1
  out = np.zeros((ho, wo, cout))
  for i in range(ho):
    for j in range(wo):
      for a in range(kh):
        for b in range(kw):
          y, xx = i * stride - ph + a * dilation, j * stride - pw + b * dilation
          if 0 <= y < h and 0 <= xx < w:
            out[i, j] += x[y, xx] @ k[a, b]
  return out


def scale_conv(x, kernel, dils, stride=1):
  """x [B, S, H, W, Cin], kernel [I, kh, kw, Cin, Cout], dils per output level."""
  b, s = x.shape[:2]
  out = []
  for n in range(b):
    levels = []
    for lv in range(s):
      acc = 0
      for i in range(kernel.shape[0]):
        if lv + i < s:
          acc = acc + conv2d(x[n, lv + i], kernel[i], dils[lv], stride)
      levels.append(acc)
    out.append(np.stack(levels))
  return np.stack(out)


def _bilinear_zero(img, h, w):
  """torchvision's deform_conv2d bilinear_interpolate, for one channel."""
  height, width = img.shape
  if h <= -1 or height <= h or w <= -1 or width <= w:
    return 0.0
  h_low, w_low = math.floor(h), math.floor(w)
  lh, lw = h - h_low, w - w_low
  val = 0.0
  for yy, wy in ((h_low, 1 - lh), (h_low + 1, lh)):
    for xx, wx in ((w_low, 1 - lw), (w_low + 1, lw)):
      if 0 <= yy < height and 0 <= xx < width:
        val += wy * wx * img[yy, xx]
  return val


def deform_conv(x, offsets, kernel, mask, stride, pad, dil):
  """x [B,H,W,C]; offsets [B,Ho,Wo,G,K,2]; mask [B,Ho,Wo,G,K] or None."""
  b, h, w, c = x.shape
  kh, kw, _, cout = kernel.shape
  _, ho, wo, g, _, _ = offsets.shape
  cg = c // g
  out = np.zeros((b, ho, wo, cout))
  for n in range(b):
    for i in range(ho):
      for j in range(wo):
        for a in range(kh):
          for bb in range(kw):
            t = a * kw + bb
            for ch in range(c):
              gi = ch // cg
              dy, dx = offsets[n, i, j, gi, t]
              v = _bilinear_zero(x[n, :, :, ch], i * stride - pad + a * dil + dy,
                                 j * stride - pad + bb * dil + dx)
              if mask is not None:
                v *= mask[n, i, j, gi, t]
              out[n, i, j] += v * kernel[a, bb, ch]
  return out


def fft_resample(x, n, band=None):
  """Ideal resampling of x [B, N, N, C] to n x n with numpy's FFT: the
  frequencies |f| <= min((n-1)//2, (N-1)//2, band) of both axes kept."""
  big = x.shape[1]
  spec = np.fft.fft2(np.asarray(x, np.float64), axes=(1, 2)) / big**2
  k = min((n - 1) // 2, (big - 1) // 2, big if band is None else band)
  out = np.zeros((x.shape[0], n, n, x.shape[-1]), complex)
  f = np.arange(-k, k + 1)
  out[:, (f % n)[:, None], (f % n)[None, :]] = spec[:, (f % big)[:, None], (f % big)[None, :]]
  return np.fft.ifft2(out * n**2, axes=(1, 2)).real


def scale_eq_nonlin(x, act, base, increment=1, norm=None):
  """The definition, rung by rung: z_r = act(norm(r, D_r x)); the output adds
  D_N z_r minus its part below the previous rung's band."""
  n = x.shape[1]
  out, prev = 0.0, None
  for r in [*range(base, n, increment), n]:
    z = fft_resample(x, r)
    z = act(z if norm is None else norm(r, z))
    part = fft_resample(z, n)
    if prev is not None:
      part = part - fft_resample(z, n, band=(prev - 1) // 2)
    out, prev = out + part, r
  return out
