"""Evaluates a trained run, or compares several.

  python evaluate.py --config configs/dss_v1_mnist.py --workdir DIR
  python evaluate.py --compare DIR1 DIR2 ... --out results/compare

Writes DIR/eval/results.{json,md} and PNG plots of accuracy and equivariance
error against the scale factor; --compare overlays evaluated runs.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from scalenet import evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config the run was trained with.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory of the trained run.')
flags.DEFINE_list('compare', None, 'Evaluated workdirs to overlay on one plot.')
flags.DEFINE_string('out', 'results/compare', 'Output directory of --compare.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if FLAGS.compare:
    runs = evaluate.compare(FLAGS.compare, FLAGS.out)
    print(f'compared {len(runs)} runs -> {FLAGS.out}/comparison.md')
    return
  if FLAGS.config is None or FLAGS.workdir is None:
    raise app.UsageError('--config and --workdir are required (or --compare DIR ...).')
  results = evaluate.evaluate(FLAGS.config, FLAGS.workdir)
  with open(f'{FLAGS.workdir}/eval/results.md') as f:
    print(f.read())
  del results


if __name__ == '__main__':
  app.run(main)
