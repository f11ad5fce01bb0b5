"""Any model of the published scale-MNIST table (Sosnovik et al. 2020, Table 2), by name.

Also the models compared with them on the same protocol (EXTRA_MODELS: the
Fourier network of Rahman & Yeh 2023, `fourier_se_mnist`).

The reference protocol (ISosnovik/sesn experiments_mnist.sh): Adam, lr 0.01
x0.1 at epochs 20 and 40, 60 epochs, batch 128, no weight decay; models at
the reference widths (~495k parameters each); the reference data generation
(bicubic rescale without antialias, stratified split) and input
normalisation; the best-validation checkpoint is evaluated.

  python train.py --config configs/sesn_table.py:mnist_cnn_28 --workdir workdirs/mnist_cnn_28
  python evaluate.py --config configs/sesn_table.py:mnist_cnn_28 --workdir workdirs/mnist_cnn_28

The argument after ':' is the model name, then options separated by commas:
  * 'plus': the table's '+' columns, training images rescaled by U(0.5, 2)
    (the reference's --extra_scaling 0.5), e.g. mnist_dss_vector_56,plus;
  * 'multires': Rahman & Yeh's multi-resolution training for a model that
    takes any input size (fourier_se_mnist): each batch ideally resampled to
    n x n, n drawn per step from 8..28, their loss over the prediction stack
    (`train.stack_loss`), and the test at every resolution 8..28. What stays
    ours: the data (scale-MNIST digits on the 28 x 28 canvas; theirs are
    plain MNIST digits; and they give each training image one fixed
    resolution, in equal groups, one resolution per batch, where we draw
    the batch's resolution per step), Adam without their weight decay and
    spectral regulariser, no circular-shift augmentation, validation at
    28 x 28. Each grid size compiles its own training step (21 programs in
    the first steps). Only for models with stack_logits (MULTIRES_MODELS);
  * 'tiny': `config_lib.tiny` and reduced widths (TINY_MODEL), for tests,
    e.g. mnist_cnn_28,tiny.
Offline the data is the 5,000-digit mnist_5k pool; for the full protocol add
--config.data_source=download (or a directory of the MNIST idx files).
Result: not yet measured.
"""

from scalenet import config as config_lib
from scalenet import models

OPTIONS = ('plus', 'multires', 'tiny')
MULTIRES = tuple(range(8, 29))  # Rahman & Yeh's train_mnist.py: train and test scales.
MULTIRES_MODELS = ('fourier_se_mnist',)  # Models with stack_logits: 'multires' trains them.

# Reduced widths of each family for ':tiny' (longest matching name prefix
# wins; families not listed take DEFAULT_TINY_MODEL).
DEFAULT_TINY_MODEL = dict(channels=(4, 8, 8), hidden=16)
TINY_MODEL = {'fourier_se_mnist': dict(channels=(4, 4, 4, 4), hidden=16)}
# Beside the table's models (mnist_*): models compared with them on its protocol.
EXTRA_MODELS = ('fourier_se_mnist',)


def tiny_model(name: str) -> dict:
  """The reduced-width `config.model` of model `name`."""
  prefixes = sorted((p for p in TINY_MODEL if name.startswith(p)), key=len)
  return dict(TINY_MODEL[prefixes[-1]] if prefixes else DEFAULT_TINY_MODEL)


def parse(arg) -> tuple[str, set[str]]:
  """'name[,option...]' -> (name, options); raises ValueError naming what is wrong."""
  name, *options = (arg or '').split(',')
  table = sorted(n for n in models.MODELS if n.startswith('mnist_') or n in EXTRA_MODELS)
  if name not in table:
    raise ValueError(f"configs/sesn_table.py needs a model of the table after ':', e.g. "
                     f"':mnist_cnn_28' or ':mnist_cnn_28,tiny'; got {arg!r}. Models: {table}.")
  unknown = sorted(set(options) - set(OPTIONS))
  if unknown:
    raise ValueError(f'unknown option(s) {unknown} in {arg!r}; choose from {OPTIONS}.')
  if 'multires' in options and name not in MULTIRES_MODELS:
    raise ValueError(f"option 'multires' trains a prediction stack; {name} has none "
                     f'(models: {MULTIRES_MODELS}).')
  return name, set(options)


def get_config(arg=None):
  name, options = parse(arg)
  config = config_lib.default_config()
  config.model_name = name  # A model of the table (scalenet.models.MODELS).
  config.model = dict()  # Reference widths: every constructor's defaults.
  # The defaults are the reference's optimisation (batch 128, 60 epochs, Adam
  # lr 0.01 without weight decay, MultiStepLR x0.1 at 20 and 40): what differs:
  config.generator = 'reference'  # Its data: bicubic L_s, no antialias, stratified split.
  config.rescale = dict(method='cubic', antialias=False)  # One L_s: the generator's.
  config.input_norm = 'reference'  # Its loaders' normalisation (mean 0.0607, std 0.2161).
  config.eval_checkpoint = 'best'  # Best validation accuracy, as train_scale_mnist.py.
  # The resolution action too (Rahman & Yeh's multi-resolution test): models of
  # one input size say so in results.json.
  config.eval_resolution_sizes = (8, 12, 14, 16, 20, 24)
  if 'plus' in options:
    config = config_lib.plus(config)  # RandomAffine(scale=(0.5, 2)) on training images.
  if 'multires' in options:
    config.train_resolutions = MULTIRES
    config.loss = 'stack'
    config.eval_resolution_sizes = MULTIRES
  if 'tiny' in options:
    config = config_lib.tiny(config)
    config.model = tiny_model(name)  # Reduced widths.
  return config
