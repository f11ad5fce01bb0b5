"""The reproduction table (results/mnist_scale.md) from a tree of evaluated runs.

Reads <root>/<model>/<plain|plus>/r<k>/eval/results.json (written by
evaluate.py; the layout of scripts/reproduce_mnist_scale.sh) and renders
`tables.published_table`, then `tables.runs_table` (what ran).

  python -m scalenet.results_table workdirs/mnist_scale [more roots] --out results/mnist_scale.md
"""

from __future__ import annotations

import argparse
import os

from scalenet import tables

load_runs = tables.load_runs


def render(runs: list[dict]) -> str:
  """The published-table layout, then the list of runs behind it.

  Raises:
    ValueError: the runs used different data protocols (`tables.check_one_protocol`).
  """
  tables.check_one_protocol(runs)
  return (tables.published_table(runs) + '\nRuns (realizations, checkpoint step evaluated, '
          'wall-clock training time):\n\n' + tables.runs_table(runs))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('roots', nargs='+', metavar='root',
                      help='directory holding <model>/<plain|plus>/r<k>/ runs; with several, '
                           'the runs of all (e.g. from two machines) form one table and the '
                           'list of runs says which root each came from')
  parser.add_argument('--out', help='markdown file to write (default: print only)')
  parser.add_argument('--header', default='', help='text put above the table')
  args = parser.parse_args(argv)
  runs = []
  for root in args.roots:
    found = load_runs(root)
    if len(args.roots) > 1:
      for run in found:
        run['source'] = root
    runs += found
  table = render(runs)
  text = (args.header.rstrip() + '\n\n' if args.header else '') + table
  if args.out:
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as f:
      f.write(text)
  print(text, end='')


if __name__ == '__main__':
  main()
