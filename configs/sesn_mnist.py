"""SESN: Hermite-Gaussian steerable scale-translation convs.

Scale-MNIST protocol (Adam, lr 0.01 x0.1 at epochs 20 and 40, 60 epochs, batch 128).

  python train.py --config configs/sesn_mnist.py --workdir workdirs/sesn_mnist
  python evaluate.py --config configs/sesn_mnist.py --workdir workdirs/sesn_mnist

Offline the data is the 5,000-digit mnist_5k pool; for the full protocol add
--config.data_source=download (or a directory of the MNIST idx files).
Result: not yet measured on the full protocol. Measured offline (mnist_5k:
3k train / 1.5k test, realization 0, 10 epochs, lr x0.1 at epochs 4 and 7;
scripts/reproduce_mnist_scale.sh, results/mnist_scale.md): test error 4.13%
with the former 7x7 kernels (scales 1.0-2.0 truncated; see models/steerable.py);
not re-run with 11x11.
"""

from scalenet import config as config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.model_name = 'sesn'
  config.model = dict(channels=(32, 63, 95), num_scales=4, ratio=2 ** (1 / 3), min_scale=1.0,
                      kernel_size=11, basis_order=4, interaction=2)
  if arg == 'tiny':
    config = config_lib.tiny(config)
    config.model = dict(channels=(4, 8), num_scales=2, ratio=1.5, kernel_size=5, basis_order=3)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return config
