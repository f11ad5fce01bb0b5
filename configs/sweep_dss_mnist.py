"""Hyperparameter sweeps of DSS v1 on scale-MNIST, one axis at a time.

  python sweep.py --config configs/sweep_dss_mnist.py --workdir workdirs/sweep_dss

Each point trains and evaluates in <workdir>/<key>=<value>/ (resumable: done
points are skipped); then one plot per hyperparameter (accuracy and Delta vs
scale, a line per value) lands in <workdir>/plots/.
"""

from configs import dss_v1_mnist


def get_config(arg=None):
  config = dss_v1_mnist.get_config(arg)
  config.sweep = (
      ('model.base', (2, 3)),
      ('model.channels', ((16, 32, 48), (32, 64, 96))),
      ('learning_rate', (0.003, 0.01)),
      ('model.interaction', (1, 2, 3)),
      ('model.num_scales', (2, 3, 4)),
  )
  if arg == 'tiny':
    config.sweep = (('model.interaction', (1, 2)), ('learning_rate', (0.01,)))
  return config
