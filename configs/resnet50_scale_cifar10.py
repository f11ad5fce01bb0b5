"""ResNet-50 with scale convs on scale-CIFAR-10 (SGD, cosine, 100 epochs).

  python train.py --config configs/resnet50_scale_cifar10.py --workdir workdirs/r50 \
      --config.data_source=/path/to/cifar-10-batches-bin   # or 'download'

Needs a GPU for the full run (23.5M parameters, 3 scales).
Result: not yet measured.
"""

from scalenet import config as config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.model_name = 'resnet50_scale'
  config.model = dict(width=64, num_scales=3, base=2, interaction=1)
  config.dataset = 'scale_cifar10'
  config.data_source = 'download'
  config.num_epochs = 100
  config.optimizer = 'sgd'
  config.learning_rate = 0.1
  config.weight_decay = 5e-4
  config.schedule = 'cosine'
  config.warmup_epochs = 2.0
  config.eval_scale_factors = (1 / 2, 1 / 1.5, 1 / 1.1, 1.0)
  if arg == 'tiny':
    config = config_lib.tiny(config)
    config.model_name = 'resnet_scale'
    config.model = dict(stage_sizes=(1, 1), width=4, num_scales=2)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return config
