"""Runs a hyperparameter sweep: python sweep.py --config configs/sweep_dss_mnist.py --workdir DIR.

Resumable: evaluated points are skipped, interrupted ones resume. One plot per
swept key lands in DIR/plots/.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from scalenet import sweep

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Sweep config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory of the sweep.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  done = sweep.run_sweep(FLAGS.config, FLAGS.workdir)
  for key, by_value in done.items():
    for value, r in by_value.items():
      print(f"{key}={value}: test accuracy {r['test_accuracy']:.4f}")


if __name__ == '__main__':
  app.run(main)
