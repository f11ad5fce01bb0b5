"""Evaluates a trained run, or compares several.

  python evaluate.py --workdir DIR                       # the run's own config
  python evaluate.py --workdir DIR --config configs/dss_v1_mnist.py --config.eval_batch_size=512
  python evaluate.py --compare DIR1 DIR2 ... --out results/compare   # or DIR1,DIR2

Evaluates DIR's best-on-validation checkpoint (config.eval_checkpoint) with
the config DIR was trained with (DIR/config.json). A --config is optional; it
must agree with the run on every key that defines the model or the data, and
supplies the evaluation settings. Writes results.{json,md} and PNG plots to
DIR/eval (or --out, checked writable before anything is computed); --compare
overlays evaluated runs.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from scalenet import evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Optional: the config the run was trained '
                                'with, for evaluation overrides.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory of the trained run.')
flags.DEFINE_list('compare', None, 'Evaluated workdirs to overlay: DIR1 DIR2 ... or DIR1,DIR2.')
flags.DEFINE_string('out', None, 'Output directory: of the evaluation (default DIR/eval), '
                    'or of --compare (default results/compare).')


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if FLAGS.compare:
    # `--compare A B C`: absl keeps A in the flag and passes B C on as arguments.
    workdirs = FLAGS.compare + [d for a in argv[1:] for d in a.split(',') if d]
    out = FLAGS.out or 'results/compare'
    runs = evaluate.compare(workdirs, out)
    print(f'compared {len(runs)} runs -> {out}/comparison.md')
    return
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.workdir is None:
    raise app.UsageError('--workdir is required (or --compare DIR ...).')
  out = FLAGS.out or os.path.join(FLAGS.workdir, 'eval')
  evaluate.evaluate(FLAGS.config, FLAGS.workdir, out_dir=out)
  with open(os.path.join(out, 'results.md')) as f:
    print(f.read())


if __name__ == '__main__':
  app.run(main)
