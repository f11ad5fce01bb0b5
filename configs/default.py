"""Default config: DSS v1 on scale-MNIST (see scalenet/config.py for every key).

  python train.py --config configs/default.py --workdir workdirs/default
  python train.py --config configs/default.py:tiny --workdir /tmp/tiny   # seconds
"""

from scalenet import config as config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  if arg == 'tiny':
    config = config_lib.tiny(config)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return config
