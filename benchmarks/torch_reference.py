"""The published PyTorch models, loaded at run time from a checkout of their code.

No reference code is stored in this repository: `reference_models` extracts
`models/` (and DISCO's precalculated basis) from the git mirrors of
ISosnovik/sesn and ISosnovik/disco, and the `scale_eq` package's Python files
from ashiq24/Scale_Equivarinat_Fourier_Layer, with `git archive` into a
temporary folder, or reads an already extracted folder (`--reference-dir`,
e.g. on a machine without the mirrors), and imports it there. A mirror that
is missing leaves its models out.

Two run-time shims let that 2020 code run with numpy 2 / scipy 1.17 (the
code itself is not changed): `np.int`/`np.float` -> the builtins, and
`scipy.arctan2` -> `np.arctan2`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile

SESN_MIRROR = '/work/.mirror/ISosnovik+sesn/repo/.git'
DISCO_MIRROR = '/work/.mirror/ISosnovik+disco/repo'
FOURIER_MIRROR = '/work/.mirror/ashiq24+Scale_Equivarinat_Fourier_Layer/repo'
# As train_mnist.py's flags (fourier_mnist): the widths of fourier_se_mnist.
FOURIER_KWARGS = dict(learning_rate=1e-2, weight_decay=3e-2, C1=32, C2=64, C3=100, C4=100,
                      FC1=256, dropout_fc1=0.0, dropout_fc2=0.75, normalizer='instance')
# As in the reference's exp_mnist.sh (the second DISCO line).
DISCO_KWARGS = dict(basis_min_scale=1.9, basis_mult=1.5)


def _python_files(git_dir: str, folder: str) -> list[str]:
  listing = subprocess.run(['git', f'--git-dir={git_dir}', 'ls-tree', '-r', '--name-only',
                            'HEAD', folder], check=True, capture_output=True, text=True).stdout
  return [p for p in listing.split() if p.endswith('.py')]


def extract(dest: str, sesn_git: str = SESN_MIRROR, disco_git: str = DISCO_MIRROR,
            fourier_git: str = FOURIER_MIRROR) -> str:
  """Extracts the reference code into dest/sesn, dest/disco and dest/fourier
  (those whose mirror exists); returns dest."""
  for name, git_dir, paths in (('sesn', sesn_git, ['models']),
                               ('disco', disco_git, ['models', 'precalculated_basis']),
                               ('fourier', fourier_git, None)):
    if not os.path.exists(git_dir):
      continue
    paths = paths or _python_files(git_dir, 'scale_eq')
    out = os.path.join(dest, name)
    os.makedirs(out, exist_ok=True)
    archive = subprocess.run(['git', f'--git-dir={git_dir}', 'archive', 'HEAD', *paths],
                             check=True, capture_output=True).stdout
    subprocess.run(['tar', '-x', '-C', out], input=archive, check=True)
  return dest


def _shims():
  import numpy as np
  import scipy
  np.int, np.float = int, float
  scipy.arctan2 = np.arctan2


def _import_models(root: str):
  """Imports root/models as a fresh package named `models`."""
  for key in [k for k in sys.modules if k == 'models' or k.startswith('models.')]:
    del sys.modules[key]
  sys.path.insert(0, root)
  try:
    return importlib.import_module('models')
  finally:
    sys.path.remove(root)


def _stub_training_frameworks():
  """The Fourier reference's model module imports pytorch_lightning and timm for
  its training loop only: empty stand-ins where they are not installed."""
  import types
  import torch
  if importlib.util.find_spec('pytorch_lightning') is None:
    pl = types.ModuleType('pytorch_lightning')

    class LightningModule(torch.nn.Module):
      def __init__(self, *args, **kwargs):
        super().__init__()

      def save_hyperparameters(self, *args, **kwargs):
        pass

      @property
      def device(self):
        return next(self.parameters()).device
    pl.LightningModule = LightningModule
    sys.modules['pytorch_lightning'] = pl
  if importlib.util.find_spec('timm') is None:
    timm, utils = types.ModuleType('timm'), types.ModuleType('timm.utils')
    utils.accuracy = None
    timm.utils = utils
    sys.modules['timm'], sys.modules['timm.utils'] = timm, utils


def _last_entry(module):
  """The Fourier reference's network predicting as it does: the logits of the
  last entry of its stack ([B, 21, 10] -> [B, 10])."""
  import torch

  class LastEntry(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.net = module

    def forward(self, x):
      return self.net(x)[:, -1]
  return LastEntry()


def reference_models(reference_dir: str | None = None) -> dict:
  """{registry name: constructor of the reference torch model} for scale-MNIST."""
  _shims()
  if reference_dir is None:
    reference_dir = extract(tempfile.mkdtemp(prefix='scalenet_ref_'))
  table = {}
  if os.path.isdir(os.path.join(reference_dir, 'sesn')):
    sesn = _import_models(os.path.join(reference_dir, 'sesn'))
    table.update({name: getattr(sesn, name) for name in dir(sesn) if name.startswith('mnist_')})
  disco_root = os.path.join(reference_dir, 'disco')
  if os.path.isdir(disco_root):
    disco = _import_models(disco_root)
    basis_dir = os.path.join(disco_root, 'precalculated_basis')
    table['mnist_disco'] = lambda: disco.mnist_disco(basis_save_dir=basis_dir, **DISCO_KWARGS)
  fourier_root = os.path.join(reference_dir, 'fourier')
  if os.path.isdir(fourier_root):
    _stub_training_frameworks()
    sys.path.insert(0, fourier_root)
    try:
      from scale_eq.models.fourier_seq_mnist import FourierSeqMist  # pylint: disable=import-error
    finally:
      sys.path.remove(fourier_root)
    from torch.nn.functional import relu
    table['fourier_se_mnist'] = lambda: _last_entry(FourierSeqMist(
        1, activation_con=relu, activation_mlp=relu, **FOURIER_KWARGS))
  return table
