"""SS-CNN: log-radial harmonic filters at several scales, max over scales.

Scale-MNIST protocol (Adam, lr 0.01 x0.1 at epochs 20 and 40, 60 epochs, batch 128).

  python train.py --config configs/sscnn_mnist.py --workdir workdirs/sscnn_mnist
  python evaluate.py --config configs/sscnn_mnist.py --workdir workdirs/sscnn_mnist

Offline the data is the 5,000-digit mnist_5k pool; for the full protocol add
--config.data_source=download (or a directory of the MNIST idx files).
Result: not yet measured on the full protocol. Measured offline (mnist_5k:
3k train / 1.5k test, realization 0, 10 epochs, lr x0.1 at epochs 4 and 7;
scripts/reproduce_mnist_scale.sh, results/mnist_scale.md): test error 4.47%.
"""

from scalenet import config as config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.model_name = 'sscnn'
  config.model = dict(channels=(32, 64, 96), scales=(1.0, 1.41, 2.0), kernel_size=7)
  if arg == 'tiny':
    config = config_lib.tiny(config)
    config.model = dict(channels=(4, 8), kernel_size=5, radial=2, angular=1)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return config
