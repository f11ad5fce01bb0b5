"""PNG plots of accuracy and equivariance error against the scale factor."""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(curves: dict, *, ylabel: str, title: str, path: str, logy: bool = False) -> None:
  """curves: {label: {factor: value}}; one line per label, log-scaled factor axis."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, curve in curves.items():
    xs = sorted(curve, key=float)
    ax.plot([float(x) for x in xs], [curve[x] for x in xs], marker='o', label=label)
  ax.set_xscale('log', base=2)
  ax.set_xlabel('scale factor s')
  ax.set_ylabel(ylabel)
  if logy:
    ax.set_yscale('log')
  ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _layer_key(name: str):
  """'lift' < 'block0.conv' < 'block0' < 'block1.conv' < ... < 'logits'."""
  if name == 'lift':
    return (-1, 0)
  if name == 'logits':
    return (10**6, 0)
  block, _, part = name.partition('.')
  return (int(block.removeprefix('block')), 0 if part else 1)


def draw_layers(ax, curves: dict, *, title: str,
                ylabel: str = 'equivariance error Delta') -> None:
  """Draws {label: {layer name: value}} on `ax`, one line per label.

  Layers of every curve share one axis, in network order ('lift', 'block0.conv',
  'block0', ..., 'logits'), so models of different depths line up by name.
  Missing or non-finite values leave a gap; the y axis is logarithmic.
  """
  names = sorted({n for c in curves.values() for n in c}, key=_layer_key)
  for label, curve in curves.items():
    ys = [curve.get(n) for n in names]
    ax.plot(range(len(names)), [float('nan') if y is None else y for y in ys],
            marker='o', label=label)
  ax.set_xticks(range(len(names)), names, rotation=45, ha='right', fontsize=8)
  ax.set_yscale('log')
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  # Below the axes: many models' curves would otherwise hide under the legend.
  ax.legend(fontsize=7, ncol=2, loc='upper center', bbox_to_anchor=(0.5, -0.3))


def plot_layers(curves: dict, *, title: str, path: str,
                ylabel: str = 'equivariance error Delta') -> None:
  """One panel of `draw_layers`, saved to `path`."""
  names = {n for c in curves.values() for n in c}
  fig, ax = plt.subplots(figsize=(max(7, 0.55 * len(names)), 4.5 + 0.15 * len(curves)))
  draw_layers(ax, curves, title=title, ylabel=ylabel)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_layer_panels(panels: dict, *, path: str, ncols: int = 2) -> None:
  """panels: {title: {label: {layer: value}}}; one `draw_layers` panel each."""
  n = len(panels)
  nrows = -(-n // ncols)
  most = max(len(c) for c in panels.values())
  fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, (4.5 + 0.15 * most) * nrows),
                           squeeze=False)
  for ax, (title, curves) in zip(axes.flat, panels.items()):
    draw_layers(ax, curves, title=title)
  for ax in list(axes.flat)[n:]:
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def draw_mean_curves(ax, curves: dict, *, ylabel: str, title: str, logy: bool = False) -> None:
  """Draws {label: {factor: [values over realizations]}} as mean +- std lines on `ax`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  for label, curve in curves.items():
    xs = sorted(curve, key=float)
    vals = [np.asarray(curve[x], np.float64) for x in xs]
    means = [v.mean() for v in vals]
    stds = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in vals]
    ax.errorbar([float(x) for x in xs], means, yerr=stds, marker='o', capsize=3, label=label)
  ax.set_xscale('log', base=2)
  ax.set_xlabel('scale factor s')
  ax.set_ylabel(ylabel)
  if logy:
    ax.set_yscale('log')
  ax.set_title(title, fontsize=9)
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=7)


def plot_mean_panels(panels: dict, *, path: str, ncols: int = 2) -> None:
  """panels: {title: (curves, ylabel, logy)}; one `draw_mean_curves` panel each."""
  n = len(panels)
  nrows = -(-n // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4.2 * nrows), squeeze=False)
  for ax, (title, (curves, ylabel, logy)) in zip(axes.flat, panels.items()):
    draw_mean_curves(ax, curves, ylabel=ylabel, title=title, logy=logy)
  for ax in list(axes.flat)[n:]:
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
