"""The published PyTorch models, loaded at run time from a checkout of their code.

No reference code is stored in this repository: `reference_models` extracts
`models/` (and DISCO's precalculated basis) from the git mirrors of
ISosnovik/sesn and ISosnovik/disco with `git archive` into a temporary
folder, or reads an already extracted folder (`--reference-dir`, e.g. on a
machine without the mirrors), and imports it there.

Two run-time shims let that 2020 code run with numpy 2 / scipy 1.17 (the
code itself is not changed): `np.int`/`np.float` -> the builtins, and
`scipy.arctan2` -> `np.arctan2`.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile

SESN_MIRROR = '/work/.mirror/ISosnovik+sesn/repo/.git'
DISCO_MIRROR = '/work/.mirror/ISosnovik+disco/repo'
# As in the reference's exp_mnist.sh (the second DISCO line).
DISCO_KWARGS = dict(basis_min_scale=1.9, basis_mult=1.5)


def extract(dest: str, sesn_git: str = SESN_MIRROR, disco_git: str = DISCO_MIRROR) -> str:
  """Extracts the reference code into dest/sesn and dest/disco; returns dest."""
  for name, git_dir, paths in (('sesn', sesn_git, ['models']),
                               ('disco', disco_git, ['models', 'precalculated_basis'])):
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


def reference_models(reference_dir: str | None = None) -> dict:
  """{registry name: constructor of the reference torch model} for scale-MNIST."""
  _shims()
  if reference_dir is None:
    reference_dir = extract(tempfile.mkdtemp(prefix='scalenet_ref_'))
  sesn = _import_models(os.path.join(reference_dir, 'sesn'))
  table = {name: getattr(sesn, name) for name in dir(sesn) if name.startswith('mnist_')}
  disco_root = os.path.join(reference_dir, 'disco')
  disco = _import_models(disco_root)
  basis_dir = os.path.join(disco_root, 'precalculated_basis')
  table['mnist_disco'] = lambda: disco.mnist_disco(basis_save_dir=basis_dir, **DISCO_KWARGS)
  return table
