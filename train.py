"""Trains a model: python train.py --config configs/dss_v1_mnist.py --workdir DIR.

Resumes automatically from the latest checkpoint in DIR. Override any config
key on the command line: --config.learning_rate=0.003. On a multi-host pod
add --distributed (calls jax.distributed.initialize() on every host).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from scalenet import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and metrics.')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (multi-host).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if FLAGS.distributed:
    import jax
    jax.distributed.initialize()
  result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  print('final:', {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})


if __name__ == '__main__':
  app.run(main)
