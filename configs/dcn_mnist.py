"""DCN: the CNN with its last two convs deformable (v1).

Scale-MNIST protocol (Adam, lr 0.01 x0.1 at epochs 20 and 40, 60 epochs, batch 128).

  python train.py --config configs/dcn_mnist.py --workdir workdirs/dcn_mnist
  python evaluate.py --config configs/dcn_mnist.py --workdir workdirs/dcn_mnist

Offline the data is the 5,000-digit mnist_5k pool; for the full protocol add
--config.data_source=download (or a directory of the MNIST idx files).
Result: not yet measured on the full protocol. Measured offline (mnist_5k:
3k train / 1.5k test, realization 0, 10 epochs, lr x0.1 at epochs 4 and 7;
scripts/reproduce_mnist_scale.sh, results/mnist_scale.md): test error 4.53%.
"""

from scalenet import config as config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.model_name = 'dcn'
  config.model = dict(channels=(32, 64, 96), offset_groups=1)
  if arg == 'tiny':
    config = config_lib.tiny(config)
    config.model = dict(channels=(4, 8))
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return config
