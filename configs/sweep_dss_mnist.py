"""The study's DSS hyperparameter sweep (its section 4.1), one axis at a time.

  python sweep.py --config configs/sweep_dss_mnist.py --workdir workdirs/sweep_dss
  python sweep.py --config configs/sweep_dss_mnist.py:deform_dss --workdir workdirs/sweep_ddss

Around the default DSS (configs/dss_v1_mnist.py, or
configs/deform_dss_mnist.py with ':deform_dss'): base {2, 3}; channels
x{0.5, 1, 2}; initial learning rate {0.003, 0.01, 0.03}; interaction
{1, 2, 3}; number of scales {2, 3, 4}. The default point is trained once
and shared by every axis: 10 runs for the 14 points. Each run trains and evaluates in
<workdir>/<key>=<value>/ (the default in <workdir>/base/), resumable; then
one plot per hyperparameter (accuracy and Delta vs scale, a line per value)
lands in <workdir>/plots/.

Options after ':' (comma-separated): 'deform_dss' (sweep the deformable
DSS), 'tiny' (two points of a reduced model, one epoch of mnist_5k: about a
minute on a CPU; both learn, for tests and a first look), 'only=KEY' (that
axis alone, e.g. 'only=learning_rate': same run directories, so a sweep can
be run axis by axis, each axis to all its realizations first).
"""

from configs import deform_dss_mnist, dss_v1_mnist

OPTIONS = ('deform_dss', 'tiny', 'only=KEY')
CHANNELS = (32, 64, 96)


def get_config(arg=None):
  options = set(filter(None, (arg or '').split(',')))
  only = {o.split('=', 1)[1] for o in options if o.startswith('only=')}
  options -= {f'only={k}' for k in only}
  unknown = sorted(options - set(OPTIONS))
  if unknown:
    raise ValueError(f'unknown option(s) {unknown} in {arg!r}; choose from {OPTIONS}.')
  module = deform_dss_mnist if 'deform_dss' in options else dss_v1_mnist
  config = module.get_config()
  config.sweep = (
      ('model.base', (2, 3)),
      ('model.channels', tuple(tuple(int(c * m) for c in CHANNELS) for m in (0.5, 1, 2))),
      ('learning_rate', (0.003, 0.01, 0.03)),
      ('model.interaction', (1, 2, 3)),
      ('model.num_scales', (2, 3, 4)),
  )
  if 'tiny' in options:
    config = module.get_config('tiny')
    # One whole epoch of mnist_5k (93 steps at batch 32) at a width that
    # learns in it; the BatchNorm running averages settle in that many steps.
    config.halt_after_steps = None
    config.model.channels = (8, 16)
    config.sweep = (('model.interaction', (1, 2)), ('learning_rate', (0.01,)))
  if only:
    axes = [key for key, _ in config.sweep]
    if only - set(axes):
      raise ValueError(f'only={sorted(only - set(axes))} in {arg!r} is not a swept key; '
                       f'the keys: {axes}.')
    config.sweep = tuple((key, values) for key, values in config.sweep if key in only)
  return config
