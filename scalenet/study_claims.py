"""The study's claims as verdicts: each from mean +- std over realizations.

`claim_ii` (Delta grows with the scale change), `claim_iv` (the deformable DSS
helps at small scale changes and hurts at large ones), `claim_v` (DSS v2
underperforms DSS v1) and `depth_lines` (where equivariance is lost through
depth), on groups {model: [run records]} of `records.realizations`.
"""

from __future__ import annotations

import math

from scalenet.records import acc, acc_at, compare, delta, factors_of, fmt, last_block
from scalenet.records import factor_key, scale_factors, stats, verdict

HALF = factor_key(0.5)


def claim_ii(groups: dict) -> tuple[str, list[str]]:
  """Delta grows with the scale change: per model and layer, Delta at the largest
  shrinking it was measured at against Delta at the smallest."""
  lines, holds = [], []
  for name, runs in groups.items():
    if not runs:
      continue
    for layer in (last_block(runs), 'logits'):
      shrink = [f for f in factors_of(runs) if float(f) < 1 and stats(delta(runs, f, layer))[2]]
      if len(shrink) < 2:
        continue
      small, large = max(shrink, key=float), min(shrink, key=float)
      a, b = delta(runs, large, layer), delta(runs, small, layer)
      v = verdict(stats(a)[0] > stats(b)[0], a, b)
      holds.append(v)
      lines.append(f'- {name} {layer}: Delta(s={float(large):.3g}) {fmt(a, 3)} vs '
                   f'Delta(s={float(small):.3g}) {fmt(b, 3)}: {v}.')
  if not holds:
    return 'inconclusive (not measured)', lines
  if all(v == 'confirmed' for v in holds):
    return 'confirmed', lines
  if all(v == 'refuted' for v in holds):
    return 'refuted', lines
  counts = {k: sum(v.startswith(k) for v in holds) for k in ('confirmed', 'refuted',
                                                               'inconclusive')}
  return 'partly: ' + ', '.join(f'{n} {k}' for k, n in counts.items() if n), lines


def depth_lines(groups: dict) -> list[str]:
  """Where equivariance is lost: the largest rise of Delta(1/2) between consecutive representations."""
  out = []
  for name, runs in groups.items():
    if not runs or HALF not in factors_of(runs):
      continue
    layers = list(runs[0]['results']['equivariance']['actions'])
    means = [(l, stats(delta(runs, HALF, l))[0]) for l in layers]
    means = [(l, m) for l, m in means if math.isfinite(m)]
    if len(means) < 2:
      continue
    rises = [(b[1] - a[1], a[0], b[0]) for a, b in zip(means, means[1:])]
    rise, frm, to = max(rises)
    path = ' -> '.join(f'{l} {m:.3g}' for l, m in means)
    if rise > 0:
      out.append(f'- {name}: {path}. Largest rise: {frm} -> {to} (+{rise:.3g}).')
    else:
      out.append(f'- {name}: {path}. No rise: Delta falls at every step measured.')
  return out


SMALL = (2 / 3, 1.1)  # Claim (iv)'s small scale changes (s = 1 excluded)...
LARGE = (0.4, 2.0)  # ...and large ones.


def _combine(verdicts: list[str]) -> str:
  """One verdict from several scales': confirmed at every one; refuted where
  some refute and none confirm; else partly confirmed, or mixed."""
  if not verdicts:
    return 'inconclusive (not measured)'
  n, yes, no = len(verdicts), verdicts.count('confirmed'), verdicts.count('refuted')
  if yes == n:
    return 'confirmed'
  if no and not yes:
    return f'refuted ({no} of {n} scales refute, none confirms)'
  if yes and not no:
    return f'partly confirmed ({yes} of {n} scales)'
  return f'mixed ({yes} of {n} confirm, {no} refute)' if yes else 'inconclusive'


def claim_iv(g, v1: str, dd: str) -> list[str]:
  """Accuracy of dd against v1 at every test scale, and the verdict."""
  out, small, large = [], [], []
  for f in scale_factors(g[v1]):
    s, x, y = float(f), acc_at(g[dd], float(f)), acc_at(g[v1], float(f))
    order, overlap = compare(x, y)
    out.append(f'  - s={s:.3g}: {dd} {fmt(x, 4, True)} % vs {v1} {fmt(y, 4, True)} %: '
               f'{order}, {overlap}.')
    if SMALL[0] - 1e-9 <= s <= SMALL[1] + 1e-9 and s != 1:
      small.append(verdict(stats(x)[0] > stats(y)[0], x, y))
    elif s <= LARGE[0] + 1e-9 or s >= LARGE[1] - 1e-9:
      large.append(verdict(stats(x)[0] < stats(y)[0], x, y))
  helps, hurts = _combine(small), _combine(large)
  overall = ('confirmed' if helps == hurts == 'confirmed' else
             'refuted' if helps.startswith('refuted') or hurts.startswith('refuted')
             else 'inconclusive')
  return [f'  - helps at small changes: {helps}; hurts at large ones: {hurts}. '
          f'**Verdict: {overall}.**'] + out


def claim_v(g, v1: str, v2: str) -> list[str]:
  x, y = acc(g[v2]), acc(g[v1])
  return [f'  - test accuracy {v2} {fmt(x, 4, True)} % vs {v1} {fmt(y, 4, True)} %: '
          f'**{verdict(stats(x)[0] < stats(y)[0], x, y)}**.']


def pair_lines(label: str, g: dict, base: str, other: str, claim) -> list[str]:
  """A claim's lines for one width, then Delta(1/2) of `other` against `base`
  (is the variant as equivariant?), with both parameter counts."""
  if not (g[base] and g[other]):
    return [f'- {label}: not measured yet.']
  p = {m: g[m][0]['results']['params'] for m in (base, other)}
  out = [f'- {label} ({other} {p[other]:,} parameters, {base} {p[base]:,}):'] + claim(
      g, base, other)
  for layer in ('block0.conv', last_block(g[base]), 'logits'):
    x, y = delta(g[other], HALF, layer), delta(g[base], HALF, layer)
    order, overlap = compare(x, y)
    out.append(f'  - Delta(1/2) at {layer}: {other} {fmt(x, 3)} vs {base} {fmt(y, 3)}: '
               f'{order}, {overlap}.')
  return out
