"""The study's report: results/study.md and its figures, from the run directories.

  python -m scalenet.study workdirs/study --runs-out results/study_runs --out results/study.md

Collects every run of `scripts/run_study.sh` under ROOT (<experiment>/<model>/r<k>,
and B/<model>/r<k>/<sweep point>) into --runs-out: each run's results.json,
config.json, metrics.jsonl and times, no checkpoints (a run that is another's,
a symlink, becomes a SAME_AS file naming it). The report is then built from
--runs-out alone, so every number traces to a directory under results/.

Each claim of the study gets a verdict from mean +- sample std over
realizations: 'confirmed' or 'refuted' when the mean +- std intervals of the
two sides do not overlap, else 'inconclusive'; n is always given.
"""

from __future__ import annotations

import argparse
import math
import os

from scalenet import plots
from scalenet.records import acc, acc_at, collect, delta, factors_of, fmt, last_block, load_run
from scalenet.records import realizations, scale_factors, stats, verdict
from scalenet.study_claims import HALF, LARGE, SMALL, claim_ii, claim_iv, claim_v, depth_lines
from scalenet.study_claims import pair_lines

A_MODELS = ('cnn', 'dcn', 'dss_v1', 'sscnn', 'mnist_ses_vector_28', 'mnist_disco')
C_STUDY = ('dss_v1', 'dss_v2', 'deform_dss')
C_HARNESS = ('mnist_dss_vector_28', 'mnist_dss_v2_28', 'mnist_deform_dss_28')
B_MODELS = ('dss_v1', 'deform_dss')
# B's default point of each model is this experiment's run (run_study.sh links it).
DEFAULT_POINT_SOURCE = {'dss_v1': 'A', 'deform_dss': 'C'}


def _table(header, rows) -> list[str]:
  return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header),
          *('| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows), '']


def accuracy_table(groups: dict) -> list[str]:
  """Test accuracy and accuracy vs scale (%), one row per model."""
  groups = {k: v for k, v in groups.items() if v}
  if not groups:
    return ['No run of these models has been evaluated yet.', '']
  factors = scale_factors(next(iter(groups.values())))
  header = ['model', 'params', 'test acc %'] + [f's={float(f):.3g}' for f in factors]
  rows = [[name, runs[0]['results']['params'], fmt(acc(runs), 4, True)]
          + [fmt(acc_at(runs, float(f)), 3, True).split(' (')[0] for f in factors]
          for name, runs in groups.items()]
  return _table(header, rows)


def delta_table(groups: dict, layers=('block0.conv', 'last', 'logits')) -> list[str]:
  """Delta(s) of a few representations at every factor each model was measured at."""
  groups = {k: v for k, v in groups.items() if v}
  if not groups:
    return []
  factors = sorted({f for runs in groups.values() for f in factors_of(runs)}, key=float)
  rows = []
  for name, runs in groups.items():
    for layer in layers:
      lname = last_block(runs) if layer == 'last' else layer
      cells = [fmt(delta(runs, f, lname), 3).split(' (')[0] for f in factors]
      rows.append([name, lname] + cells)
  return _table(['model', 'representation'] + [f's={float(f):.3g}' for f in factors], rows)


def time_table(groups: dict) -> list[str]:
  rows = []
  for name, runs in groups.items():
    if not runs:
      continue
    step = stats([r['step_seconds'] for r in runs])[0]
    tr = stats([r['train_seconds'] for r in runs])[0]
    ev = stats([r['eval_seconds'] for r in runs])[0]
    epochs = runs[0]['config'].get('num_epochs')
    rows.append([name, f'{step * 1000:.0f}' if math.isfinite(step) else '-', epochs,
                 f'{tr / 60:.1f}' if math.isfinite(tr) else '-',
                 f'{ev / 60:.1f}' if math.isfinite(ev) else '-', len(runs)])
  return _table(['model', 'ms / training step (batch 128)', 'epochs', 'train min / run',
                 'eval min / run', 'n'], rows)


def _curves(groups, value_fn, factors_fn):
  return {name: {f: [x for x in value_fn(runs, f) if x is not None] for f in factors_fn(runs)}
          for name, runs in groups.items() if runs}


def figures(groups: dict, path_prefix: str, title: str) -> list[str]:
  """Accuracy vs scale and Delta vs scale (first conv, last block, logits): one PNG."""
  groups = {k: v for k, v in groups.items() if v}
  if not groups:
    return []
  panels = {f'{title}: test accuracy vs scale': (
      _curves(groups, lambda rs, f: acc_at(rs, float(f)), scale_factors), 'accuracy', False)}
  for layer in ('block0.conv', 'last', 'logits'):
    curves = {}
    for name, runs in groups.items():
      lname = last_block(runs) if layer == 'last' else layer
      curves[f'{name} ({lname})' if layer == 'last' else name] = {
          f: [x for x in delta(runs, f, lname) if x is not None] for f in factors_of(runs)}
    curves = {k: {f: v for f, v in c.items() if v} for k, c in curves.items()}
    panels[f'{title}: Delta vs scale, {layer}'] = (curves, 'Delta', True)
  path = path_prefix + '.png'
  plots.plot_mean_panels(panels, path=path)
  return [f'![{title}]({os.path.basename(path)})', '']


# --- The report. ---

def _data_line(runs: list) -> str:
  if not runs:
    return 'no evaluated run yet'
  r = runs[0]['results']
  data, cfg = r['data'], runs[0]['config']
  files = (data.get('source_files') or {}).get('verified', 'checksums not recorded')
  sizes = data.get('split_sizes', {})
  return (f"{data['dataset']} from {data['data_source']} ({data.get('source_identity')}; "
          f"{files}), generator {data['generator']}, L_s {data['rescale']}, input norm "
          f"{data['input_norm']}; {sizes.get('train')} train images, {sizes.get('test')} "
          f"images per test split; {cfg['num_epochs']} epochs, lr {cfg['learning_rate']} "
          f"x{cfg['lr_decay_factor']} at {cfg['lr_decay_epochs']}, batch {cfg['batch_size']}")


def render(runs: str, out: str) -> str:
  """Writes the report to `out` (figures beside it) and returns its text."""
  fig_dir = os.path.dirname(out) or '.'
  a = {m: realizations(runs, 'A', m) for m in A_MODELS}
  c_study = {m: realizations(runs, 'C', m) for m in C_STUDY}
  c_harness = {m: realizations(runs, 'C', m) for m in C_HARNESS}
  everything = [r for g in (a, c_study, c_harness) for rs in g.values() for r in rs]
  missing = [f'{e} {m}' for e, g in (('A', a), ('C', c_study), ('C', c_harness))
             for m, rs in g.items() if not rs]
  lines = ['# The study: equivariance of trained CNN, DCN, DSS and SS-CNN to rescaling', '',
           'Generated by `python -m scalenet.study` from the runs of '
           '`scripts/run_study.sh` (copied, without checkpoints, to `results/study_runs/`).', '',
           f'**Data and protocol** (every run): {_data_line(everything)}.', '',
           'Verdicts compare mean ± sample std over realizations: confirmed or refuted '
           'when the two intervals do not overlap, inconclusive when they do; n is given '
           'with every figure. Delta is the layer-wise equivariance error on '
           f'{everything[0]["results"]["equivariance"]["num_images"] if everything else "-"} '
           'test images (mean of per-image ratios), at every factor that acts exactly on '
           'the representation (a scale-space one only at powers of its ratio).', '']
  if missing:
    lines += ['**Not run yet** (no evaluated realization): ' + ', '.join(missing) + '.', '']

  lines += ['## Experiment A: equivariance in existing models (the study\'s section 3)', '']
  lines += accuracy_table(a) + delta_table(a) + figures(a, os.path.join(fig_dir, 'study_A'),
                                                        'A')
  lines += ['### Claim (i): deformable convolution beats regular convolution in accuracy '
            'and equivariance', '']
  if a['cnn'] and a['dcn']:
    va = verdict(stats(acc(a['dcn']))[0] > stats(acc(a['cnn']))[0], acc(a['dcn']), acc(a['cnn']))
    lines.append(f"- Accuracy: dcn {fmt(acc(a['dcn']), 4, True)} % vs cnn "
                 f"{fmt(acc(a['cnn']), 4, True)} %: {va}.")
    for layer in ('block0.conv', 'logits'):
      d, c = delta(a['dcn'], HALF, layer), delta(a['cnn'], HALF, layer)
      lines.append(f'- Delta(1/2) at {layer}: dcn {fmt(d, 3)} vs cnn {fmt(c, 3)}: '
                   f'{verdict(stats(d)[0] < stats(c)[0], d, c)}.')
  else:
    lines.append('- Not measured yet (needs A cnn and dcn).')
  lines += ['', '### Claim (ii): the larger the scale change, the larger the equivariance error',
            '']
  v2, l2 = claim_ii(a)
  lines += [f'Verdict: {v2}.', ''] + l2 + ['']
  lines += ['### Claim (iii): SS-CNN is the most equivariant but too costly', '']
  measured = {m: rs for m, rs in a.items() if rs and HALF in factors_of(rs)}
  if 'sscnn' in measured and len(measured) > 1:
    ranking = sorted(measured, key=lambda m: stats(delta(measured[m], HALF, 'logits'))[0])
    lines.append('- Delta(1/2) of the logits, lowest first: ' + ', '.join(
        f"{m} {stats(delta(measured[m], HALF, 'logits'))[0]:.3g}" for m in ranking) + '.')
    lines.append(f"- SS-CNN is {'the' if ranking[0] == 'sscnn' else 'not the'} most "
                 f'equivariant at the logits (rank {ranking.index("sscnn") + 1} of '
                 f'{len(ranking)}).')
  else:
    lines.append('- Not measured yet (needs A sscnn and another model).')
  steps = {m: stats([r['step_seconds'] for r in rs])[0] for m, rs in a.items() if rs}
  if 'sscnn' in steps:
    others = ', '.join(f'{steps["sscnn"] / v:.2f}x {m}' for m, v in steps.items()
                       if m != 'sscnn' and math.isfinite(v))
    lines.append(f'- Cost: an SS-CNN training step takes {others} (median logged step '
                 'times below; wall clock of shared cores, see the notes).')
  lines += ['', 'Cost (this machine, one run at a time):', ''] + time_table(a)
  lines += ['### Where equivariance is lost through depth (trained, s = 1/2)', '']
  trained = {m: rs for g in (a, c_study, c_harness) for m, rs in g.items() if rs}
  lines += depth_lines(trained) + ['']

  lines += ['## Experiment C: DSS v1 vs DSS v2 vs deformable DSS (section 4.2)', '',
            '### At the study\'s widths', '']
  lines += accuracy_table(c_study) + delta_table(c_study)
  lines += figures(c_study, os.path.join(fig_dir, 'study_C_study'), 'C, study widths')
  lines += ['### At the published table\'s ~495k parameters', '']
  lines += accuracy_table(c_harness) + delta_table(c_harness)
  lines += figures(c_harness, os.path.join(fig_dir, 'study_C_harness'), 'C, ~495k')
  lines += ['### Claim (iv): the deformable DSS helps at small scale changes and hurts at '
            'large ones', '',
            f'Small changes: {SMALL[0]:.3g} <= s <= {SMALL[1]:.3g}, s != 1; large: s <= '
            f'{LARGE[0]:.3g} or s >= {LARGE[1]:.3g}. "Helps" needs deform_dss above dss_v1 '
            'with separated intervals at every small change, "hurts" below at every large '
            'one.', '']
  for label, v1, dd in (('study widths', 'dss_v1', 'deform_dss'),
                        ('~495k', 'mnist_dss_vector_28', 'mnist_deform_dss_28')):
    g = c_study if label == 'study widths' else c_harness
    lines += pair_lines(label, g, v1, dd, claim_iv)
  lines += ['', '### Claim (v): DSS v2 underperforms DSS v1', '']
  for label, v1, v2 in (('study widths', 'dss_v1', 'dss_v2'),
                        ('~495k', 'mnist_dss_vector_28', 'mnist_dss_v2_28')):
    g = c_study if label == 'study widths' else c_harness
    lines += pair_lines(label, g, v1, v2, claim_v)

  lines += ['', '## Experiment B: DSS hyperparameters (section 4.1)', '']
  lines += sweep_section(runs, fig_dir)
  text = '\n'.join(lines) + '\n'
  with open(out, 'w') as f:
    f.write(text)
  return text


def hyperparameter_effect(what: str, by_value: dict, pct: bool = False,
                          default: str | None = None) -> str:
  """One line: does `what` ({value: [measurements]}) depend on the value?

  'matters' when the intervals (mean +- std) of the highest and the lowest
  value do not overlap, 'within the noise' when they do. A value measured
  once has no spread of its own: it takes the spread of the `default`
  value's realizations when that has n >= 2 (homoscedastic noise, and the
  line says so), else there is no verdict. No verdict while a value is not
  measured. pct: shown in %.
  """
  summary = {v: stats(xs) for v, xs in by_value.items()}
  if len(summary) < 2:
    return f'{what}: one value only, nothing to compare.'
  if not any(n for _, _, n in summary.values()):
    return f'{what}: not measured.'
  short = [v for v, (_, _, n) in summary.items() if n < 2]
  single = [v for v in short if summary[v][2] == 1]
  ref = summary.get(default, (0.0, 0.0, 0))
  if len(single) < len(short) or (single and ref[2] < 2):
    return f"{what}: no verdict yet (n < 2 at {', '.join(short)})."
  spread = {v: ref[1] if v in single else s for v, (_, s, _) in summary.items()}
  hi = max(summary, key=lambda v: summary[v][0])
  lo = min(summary, key=lambda v: summary[v][0])
  apart = summary[hi][0] - spread[hi] > summary[lo][0] + spread[lo]
  word = 'matters' if apart else 'within the noise'
  k, digits = (100.0, 4) if pct else (1.0, 3)
  borrowed = [v for v in (hi, lo) if v in single]
  how = ('intervals do not overlap' if apart else 'intervals overlap') + (
      f" (n=1 at {', '.join(borrowed)}: ± {ref[1] * k:.2g}, the spread of the default "
      f'{default}\'s {ref[2]} realizations)' if borrowed else '')
  return (f'{what}: **{word}**: highest at {hi} ({fmt(by_value[hi], digits, pct)}), lowest at '
          f'{lo} ({fmt(by_value[lo], digits, pct)}), {how}.')


def _first_conv_delta(runs) -> str:
  """Delta(1/2) at block0.conv, or at the factor nearest 1/2 that acts on it exactly."""
  measured = [f for f in factors_of(runs) if any(x is not None for x in delta(runs, f, 'block0.conv'))]
  if not measured:
    return '-'
  f = HALF if HALF in measured else min(measured, key=lambda k: abs(math.log(float(k) / 0.5)))
  cell = fmt(delta(runs, f, 'block0.conv'), 3)
  return cell if f == HALF else f'{cell} at s={float(f):.3g}'


def sweep_section(runs: str, fig_dir: str) -> list[str]:
  """Per model and swept key: accuracy and Delta per value, the effect, one figure per key."""
  from configs import sweep_dss_mnist  # pylint: disable=g-import-not-at-top
  from scalenet import sweep  # pylint: disable=g-import-not-at-top
  out = []
  for model in B_MODELS:
    base = os.path.join(runs, 'B', model)
    reals = sorted(d for d in os.listdir(base)) if os.path.isdir(base) else []
    arg = 'deform_dss' if model == 'deform_dss' else None
    points = sweep.sweep_points(sweep_dss_mnist.get_config(arg))
    # The default point is the source experiment's run of each realization: all of them count.
    source = DEFAULT_POINT_SOURCE[model]
    default_runs = realizations(runs, source, model)
    out += [f'### {model} ({len(reals)} realization(s): {", ".join(reals) or "none yet"}; '
            f'the default point: {source}\'s {len(default_runs)} run(s))', '']
    if not reals:
      continue
    for key in dict.fromkeys(p.key for p in points):
      by_value, default = {}, None
      for p in (p for p in points if p.key == key):
        if p.run == sweep.BASE_RUN:
          default, by_value[str(p.value)] = str(p.value), default_runs
        else:
          by_value[str(p.value)] = [r for r in (load_run(runs, os.path.join('B', model, k, p.run))
                                                for k in reals) if r]
      rows = [[v, fmt(acc(rs), 4, True), _first_conv_delta(rs),
               fmt(delta(rs, HALF, 'logits'), 3)] for v, rs in by_value.items()]
      out += [f'**{key}**', ''] + _table(['value', 'test acc %', 'Delta(1/2) block0.conv',
                                         'Delta(1/2) logits'], rows)
      measured = lambda fn: {v: [x for x in fn(rs) if x is not None]
                             for v, rs in by_value.items()}
      first = measured(lambda rs: delta(rs, HALF, 'block0.conv'))
      other = [v for v, rs in by_value.items() if rs and not first[v]]
      out += ['- ' + hyperparameter_effect('test accuracy (%)', measured(acc), True, default),
              '- ' + (hyperparameter_effect('Delta(1/2) at the first conv', first, False, default)
                      if not other else
                      f"Delta(1/2) at the first conv: not compared (1/2 does not act "
                      f"exactly on it at {', '.join(other)})."),
              '- ' + hyperparameter_effect('Delta(1/2) of the logits',
                                           measured(lambda rs: delta(rs, HALF, 'logits')),
                                           False, default), '']
      groups = {f'{key}={v}': rs for v, rs in by_value.items() if rs}
      out += figures(groups, os.path.join(fig_dir, f'study_B_{model}_{key.replace(".", "_")}'),
                     f'B {model}, {key}')
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('root', help='the runs of scripts/run_study.sh (its ROOT)')
  parser.add_argument('--runs-out', default='results/study_runs',
                      help='where the runs\' records are copied (then read from)')
  parser.add_argument('--out', default='results/study.md')
  parser.add_argument('--notes', help='markdown file appended to the report (what ran where, '
                      'what did not and why)')
  args = parser.parse_args(argv)
  if args.notes and not os.path.exists(args.notes):
    parser.error(f'--notes {args.notes} does not exist.')
  n = collect(args.root, args.runs_out)
  text = render(args.runs_out, args.out)
  if args.notes:
    with open(args.notes) as f, open(args.out, 'w') as out:
      out.write(text + '\n## Notes\n\n' + f.read())
  print(f'collected {n} run(s) into {args.runs_out}; wrote {args.out}')


if __name__ == '__main__':
  main()
