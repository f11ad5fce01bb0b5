"""Input normalisation: (x - mean) / std on images in [0, 1].

`config.input_norm` names one of NORMS: 'none' (images stay in [0, 1]) or
'reference', the scale-MNIST statistics of ISosnovik/sesn's loaders (mean
0.0607, std 0.2161).

Normalise after any rescale. L_s commutes with this affine map wherever L_s
is defined, but shrinking fills the border of the canvas with 0: the
background of a [0, 1] image, not of a normalised one (-mean / std). So
batches are normalised after the "+" rescale of their uint8 images, and code
that rescales model inputs itself (the equivariance error, accuracy at
enlargements computed on the fly) should rescale [0, 1] images and normalise
afterwards, e.g. `fn = lambda x: model(normalize(x, 'reference'))`.
"""

from __future__ import annotations

NORMS = {'none': None, 'reference': (0.0607, 0.2161)}


def get_norm(name: str | None):
  """(mean, std), or None for no normalisation."""
  name = name or 'none'
  if name not in NORMS:
    raise ValueError(f'unknown input_norm {name!r}; choose from {sorted(NORMS)}.')
  return NORMS[name]


def normalize(x, norm: str | None = 'none'):
  """(x - mean) / std for images x in [0, 1] (numpy or jax arrays, any shape).

  Args:
    x: float images in [0, 1].
    norm: a key of NORMS; 'none' or None returns x unchanged.
  """
  stats = get_norm(norm)
  if stats is None:
    return x
  mean, std = stats
  return (x - mean) / std
