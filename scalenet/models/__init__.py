"""Model registry: every network of the study by name.

  model = get_model('dss_v1', num_classes=10, rngs=nnx.Rngs(0), channels=(16, 32))
  apply, state = make_apply(model)   # pure, jitted: apply(state, x) -> logits

Defaults of every constructor are the scale-MNIST configs, except the ResNets
(scale-CIFAR-10).
"""

from __future__ import annotations

import inspect

import jax
from flax import nnx

from scalenet.models import cnn, dss, fourier, mnist_cnn, mnist_disco, mnist_dss, mnist_kanazawa
from scalenet.models import mnist_ses, mnist_ss, mnist_sevf, mnist_xu, resnet, steerable

FAMILIES = (cnn, dss, steerable, resnet,  # the study's models
            # the published scale-MNIST table (Sosnovik et al. 2020, Table 2)
            mnist_cnn, mnist_xu, mnist_kanazawa, mnist_sevf, mnist_dss, mnist_ss, mnist_ses,
            mnist_disco,
            fourier)  # truly scale-equivariant Fourier layers (Rahman & Yeh 2023)


def _merge(families) -> dict:
  merged = {}
  for family in families:
    for name, build in family.MODELS.items():
      if name in merged:
        raise ValueError(f'model {name!r} is registered twice ({family.__name__}).')
      merged[name] = build
  return merged


MODELS = _merge(FAMILIES)  # Every registered model by name: each family's MODELS.
_NOT_KWARGS = {'rngs', 'kwargs', 'num_classes', 'self'}


def model_kwargs(name: str) -> set[str]:
  """Keyword arguments a model accepts: its class's, less those its entry fixes."""
  build = MODELS[name]
  params = set(inspect.signature(build.model_class.__init__).parameters)
  return params - set(build.fixed_kwargs) - _NOT_KWARGS


def model_defaults(name: str) -> dict:
  """{keyword: default} of every keyword `model_kwargs(name)` names that has one.

  The registry entry's own defaults win over its class's (`dcn` sets deformable=2).
  """
  build = MODELS[name]
  out = {k: p.default for k, p in inspect.signature(build.model_class.__init__).parameters.items()
         if p.default is not inspect.Parameter.empty}
  out.update(build.default_kwargs)
  return {k: v for k, v in out.items() if k in model_kwargs(name)}


def get_model(name: str, *, num_classes: int = 10, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
  """Builds model `name` with `kwargs` (from `config.model`).

  Raises:
    ValueError: an unknown name, or a keyword the model does not take (naming
      it), or a bad hyperparameter value.
  """
  if name not in MODELS:
    raise ValueError(f'unknown model_name {name!r}; choose from {sorted(MODELS)}.')
  unknown = sorted(set(kwargs) - model_kwargs(name))
  if unknown:
    raise ValueError(f'model {name!r} got unknown config.model key(s) {unknown}; '
                     f'it takes {sorted(model_kwargs(name))}.')
  return MODELS[name](num_classes, rngs=rngs, **kwargs)


def make_apply(model: nnx.Module, method: str = '__call__'):
  """(apply, state): a jitted pure function of (state, x) and the model's state.

  `apply` runs the model in inference mode (BatchNorm running statistics,
  no dropout) on a merged copy; `model` itself keeps its mode. `method` is
  any method of the model taking x, e.g. '__call__' (logits) or
  'representations' ({name: array}).
  """
  if not callable(getattr(model, method, None)):
    raise ValueError(f'{type(model).__name__} has no method {method!r}.')
  graphdef, state = nnx.split(model)

  @jax.jit
  def apply(state, x):
    copy = nnx.merge(graphdef, state)
    copy.eval()
    return getattr(copy, method)(x)

  return apply, state


def count_params(model: nnx.Module) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
