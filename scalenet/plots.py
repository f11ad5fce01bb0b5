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
