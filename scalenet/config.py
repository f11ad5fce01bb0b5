"""The configuration schema: every key a run may set, with its default.

configs/*.py start from `default_config()` and override; `validate` rejects
keys that are not in the schema (a misspelt key would otherwise be ignored
silently) and values that cannot work.
"""

from __future__ import annotations

import difflib

import ml_collections

OPTIMIZERS = ('sgd', 'adam', 'adamw')
SCHEDULES = ('constant', 'step', 'cosine')
LOSSES = ('logits', 'stack')
EVAL_CHECKPOINTS = ('best', 'latest')
# Keys that define the model and the data: a resume or an evaluation with
# another value would test a different run (run_record.check_identity).
MODEL_KEYS = ('model_name', 'model')
DATA_KEYS = ('dataset', 'data_source', 'realization', 'image_size', 'generator', 'rescale',
             'input_norm')
IDENTITY_KEYS = MODEL_KEYS + DATA_KEYS
# Keys that do not change what is trained: a resume may change them unrecorded.
BOOKKEEPING_KEYS = ('progress_bar', 'halt_after_steps', 'log_every_steps',
                    'checkpoint_every_steps', 'keep_checkpoints', 'data_dir', 'sweep')
# The '+' setting of Sosnovik et al. (2020): training images rescaled by U(0.5, 2.0).
PLUS_SCALE = (0.5, 2.0)


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds init, data order and augmentation.
  # Model.
  c.model_name = 'dss_v1'  # A key of scalenet.models.MODELS.
  c.model = ml_collections.ConfigDict()  # Keyword arguments of the model (see its docstring).
  # Data.
  c.dataset = 'scale_mnist'  # scale_mnist | scale_fashion_mnist | scale_cifar10.
  c.data_source = ml_collections.config_dict.placeholder(str)  # None: mnist_5k offline default.
  c.data_dir = 'data/tfds'  # Where prepared data sets live.
  c.realization = 0  # Protocol seed 0..5 (split and scale factors).
  c.image_size = ml_collections.config_dict.placeholder(int)  # None: the data set's smallest.
  c.generator = 'default'  # default (bilinear, antialiased) | reference[_pil] (bicubic).
  c.input_norm = 'none'  # none | reference ((x - 0.0607) / 0.2161), after any rescale.
  c.rescale = ml_collections.ConfigDict({'method': 'linear', 'antialias': True})  # The run's L_s.
  c.augment_scale = ml_collections.config_dict.placeholder(tuple)  # (lo, hi): '+' is (0.5, 2.0).
  c.augment_rescale = ml_collections.ConfigDict({'method': 'cubic', 'antialias': False})  # Its L_s.
  c.eval_splits = ml_collections.config_dict.placeholder(list)  # None: all but train.
  # Optimisation.
  c.batch_size = 128  # Global batch, divisible by the number of devices.
  c.eval_batch_size = 256  # Global eval batch, divisible by the number of devices.
  c.num_epochs = 60  # Length of training in epochs.
  c.optimizer = 'adam'  # sgd | adam | adamw.
  c.learning_rate = 0.01  # Peak learning rate.
  c.momentum = 0.9  # SGD momentum.
  c.weight_decay = 0.0  # L2 (sgd, adam) or decoupled decay (adamw).
  c.schedule = 'step'  # constant | step | cosine.
  c.lr_decay_epochs = (20, 40)  # Epochs at which 'step' multiplies the rate by lr_decay_factor.
  c.lr_decay_factor = 0.1  # Factor of each 'step' decay.
  c.warmup_epochs = 0.0  # Linear warm-up length.
  c.label_smoothing = 0.0  # Label smoothing of the cross-entropy.
  c.loss = 'logits'  # logits (cross-entropy) | stack (Rahman & Yeh's, models with stack_logits).
  # Rahman & Yeh's multi-resolution training: each step's batch resampled
  # ideally (fourier.ideal_resample) to an n x n grid, n drawn per step from
  # these (from the seed and the step: a resume replays it). (): the data's size.
  c.train_resolutions = ()
  # Logging and checkpoints.
  c.log_every_steps = 50  # Metrics to stdout, TensorBoard and metrics.jsonl.
  c.eval_every_epochs = 1  # Validation accuracy every this many epochs.
  c.checkpoint_every_steps = 500  # Periodic (async) checkpoints; one at the end too.
  c.keep_checkpoints = 3  # Checkpoints kept.
  c.halt_after_steps = ml_collections.config_dict.placeholder(int)  # Stop early (tests, preemption drills).
  c.progress_bar = True  # Every tqdm bar: training steps, reading and preparing splits.
  # Evaluation.
  c.eval_num_images = 1000  # Test images for the equivariance error.
  c.eval_split_images = ml_collections.config_dict.placeholder(int)  # None: every image of each split; N: the first N (results.json says).
  c.eval_scale_factors = (1 / 3, 1 / 2.5, 1 / 2, 1 / 1.5, 1 / 1.1, 1.0, 1.1, 1.5, 2.0)
  # Layer-wise Delta at these factors, plus each model's smallest exact one (1/r).
  c.eval_equivariance_factors = (0.5, 2.0)
  # The resolution action (transforms.Resolution) on the same images: accuracy,
  # agreement with the full-resolution prediction and layer-wise Delta at each
  # of these grid sizes, for models that take other input sizes (others say
  # why not). () skips it; configs/sesn_table.py sets 8..24.
  c.eval_resolution_sizes = ()
  c.eval_checkpoint = 'best'  # best (highest validation accuracy, strict improvement) | latest.
  c.eval_checkpoint_step = ml_collections.config_dict.placeholder(int)  # A step of checkpoints/ instead.
  # Sweeps: (('dotted.key', (values, ...)), ...); only used by sweep.py.
  c.sweep = ()
  return c


def flat_items(cfg, prefix: str = '') -> dict:
  """{dotted key: value} of a config; `model` (free-form kwargs) stays one dict."""
  out = {}
  for k, v in cfg.items():
    if isinstance(v, ml_collections.ConfigDict) and k != 'model':
      out.update(flat_items(v, f'{prefix}{k}.'))
    else:
      out[prefix + k] = v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v
  return out


def validate(config) -> None:
  """Raises ValueError naming any unknown key or impossible value."""
  known = set(flat_items(default_config()))
  for key in flat_items(config):
    if key not in known:
      close = difflib.get_close_matches(key, known, n=1)
      hint = f" Did you mean '{close[0]}'?" if close else ''
      raise ValueError(f"unknown config key '{key}'.{hint}")
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f'config.optimizer must be one of {OPTIMIZERS}; got {config.optimizer!r}.')
  if config.loss not in LOSSES:
    raise ValueError(f'config.loss must be one of {LOSSES}; got {config.loss!r}.')
  if any(int(n) != n or n < 1 for n in config.train_resolutions):
    raise ValueError('config.train_resolutions must be positive integers; got '
                     f'{config.train_resolutions}.')
  if config.schedule not in SCHEDULES:
    raise ValueError(f'config.schedule must be one of {SCHEDULES}; got {config.schedule!r}.')
  for key in ('batch_size', 'eval_batch_size', 'num_epochs', 'log_every_steps',
              'checkpoint_every_steps', 'keep_checkpoints', 'eval_num_images'):
    if int(config[key]) < 1:
      raise ValueError(f'config.{key} must be >= 1; got {config[key]}.')
  if config.eval_split_images is not None and int(config.eval_split_images) < 1:
    raise ValueError(f'config.eval_split_images must be None or >= 1; '
                     f'got {config.eval_split_images}.')
  if config.eval_checkpoint not in EVAL_CHECKPOINTS:
    raise ValueError(f'config.eval_checkpoint must be one of {EVAL_CHECKPOINTS}; '
                     f'got {config.eval_checkpoint!r}.')
  if config.augment_scale is not None:
    lo, hi = config.augment_scale
    if not 0 < lo <= hi:
      raise ValueError(f'config.augment_scale must be (lo, hi) with 0 < lo <= hi; '
                       f'got {config.augment_scale}.')
  if not config.learning_rate > 0:
    raise ValueError(f'config.learning_rate must be > 0; got {config.learning_rate}.')
  if any(not s > 0 for s in config.eval_equivariance_factors):
    raise ValueError('config.eval_equivariance_factors must all be > 0; got '
                     f'{config.eval_equivariance_factors}.')
  if any(int(n) != n or n < 1 for n in config.eval_resolution_sizes):
    raise ValueError('config.eval_resolution_sizes must be positive integers; got '
                     f'{config.eval_resolution_sizes}.')
  if any(not s > 0 for s in config.eval_scale_factors):
    raise ValueError(f'config.eval_scale_factors must all be > 0; got {config.eval_scale_factors}.')
  _check_one_rescale(config)


def _check_one_rescale(config) -> None:
  """The run's L_s (config.rescale) must be the one its data were generated with.

  Otherwise the stored fixed-scale test splits and the rescales computed on
  the fly (accuracy at enlargements, Delta) would use different operators.
  """
  from scalenet import transforms  # pylint: disable=g-import-not-at-top
  from scalenet.data import generate  # pylint: disable=g-import-not-at-top
  data_spec = generate.get_generator(config.generator).spec
  run_spec = transforms.spec_from_config(config)
  if run_spec != data_spec:
    raise ValueError(
        f'config.rescale {dict(config.rescale)} differs from the L_s of '
        f"config.generator={config.generator!r} (method {data_spec.method!r}, antialias "
        f'{data_spec.antialias}): set both, so data, accuracy vs scale and Delta use one '
        'operator.')


def tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to seconds on a CPU: tests and the README's first run."""
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 1
  config.halt_after_steps = 12
  config.log_every_steps = 4
  config.checkpoint_every_steps = 6
  config.eval_num_images = 32
  config.eval_splits = ['validation', 'test', 'test_s1000', 'test_s0500']
  config.lr_decay_epochs = ()
  config.eval_checkpoint = 'latest'  # A 12-step run ends before its first validation.
  return config


def plus(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The '+' setting: training images randomly rescaled by U(0.5, 2.0), bicubic.

  As the reference (ISosnovik/sesn, --extra_scaling 0.5: torchvision
  RandomAffine(0, scale=(0.5, 2.0)) with PIL bicubic resampling, training
  split only). Here L_s is transforms.RescaleSpec('cubic', antialias=False)
  about the canvas centre, canvas kept, clipped to [0, 1]; PIL's own kernel
  is augment_rescale.method='pil_bicubic' (generate.py says how they differ).
  """
  config.augment_scale = PLUS_SCALE
  config.augment_rescale = {'method': 'cubic', 'antialias': False}
  return config
