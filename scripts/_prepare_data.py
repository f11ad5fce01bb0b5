"""Prepares the data set a run will read, before parallel runs start.

  python scripts/_prepare_data.py CONFIG[:ARG] REALIZATION [--config.KEY=VALUE ...]

Only the overrides that choose the data are applied; no two processes then
build one tfds data set at the same time.
"""

import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scalenet.data import pipeline  # noqa: E402

DATA_KEYS = ('dataset', 'data_source', 'data_dir', 'generator', 'input_norm')


def main(argv):
  path, _, arg = argv[1].partition(':')
  spec = importlib.util.spec_from_file_location('run_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.realization = int(argv[2])
  for a in argv[3:]:
    key, _, value = a.removeprefix('--config.').partition('=')
    if key in DATA_KEYS:
      config[key] = value
    elif key == 'image_size':
      config[key] = int(value)
  pipeline.prepare(config, progress=False)


if __name__ == '__main__':
  main(sys.argv)
