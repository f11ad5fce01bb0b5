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

from scalenet.models.cnn import cnn, dcn, dcnv2
from scalenet.models.dss import deform_dss, dss_v1, dss_v2
from scalenet.models.resnet import resnet50_scale, resnet_scale
from scalenet.models.steerable import sesn, sscnn
from scalenet.models import mnist_cnn, mnist_dss, mnist_kanazawa, mnist_sevf, mnist_xu
from scalenet.models import mnist_disco, mnist_ses, mnist_ss

MODELS = {
    'cnn': cnn,
    'dcn': dcn,
    'dcnv2': dcnv2,
    'dss_v1': dss_v1,
    'dss_v2': dss_v2,
    'deform_dss': deform_dss,
    'sscnn': sscnn,
    'sesn': sesn,
    'resnet_scale': resnet_scale,
    'resnet50_scale': resnet50_scale,
}

# The published scale-MNIST table (Sosnovik et al. 2020, Table 2): each
# family's module builds its _28 and _56 variants.
for _module, _names in (
    (mnist_cnn, ('mnist_cnn_28', 'mnist_cnn_56', 'mnist_dcn_28')),
    (mnist_xu, ('mnist_xu_28', 'mnist_xu_56')),
    (mnist_kanazawa, ('mnist_kanazawa_28', 'mnist_kanazawa_56')),
    (mnist_sevf, ('mnist_sevf_scalar_28', 'mnist_sevf_scalar_56',
                  'mnist_sevf_vector_28', 'mnist_sevf_vector_56')),
    (mnist_dss, ('mnist_dss_scalar_28', 'mnist_dss_scalar_56',
                 'mnist_dss_vector_28', 'mnist_dss_vector_56', 'mnist_dss_v2_28',
                 'mnist_deform_dss_28')),
    (mnist_ss, ('mnist_ss_28', 'mnist_ss_56')),
    (mnist_ses, tuple(mnist_ses.VARIANTS)),
    (mnist_disco, ('mnist_disco',)),
):
  MODELS.update({_n: getattr(_module, _n) for _n in _names})


def _signatures(name: str) -> list[inspect.Signature]:
  """The signatures whose keywords model `name` accepts, outermost first.

  A factory made by `mnist_common.factory` names its class (`model_class`);
  the study's thin factories pass their keywords on to one class each.
  """
  fn = MODELS[name]
  if hasattr(fn, 'model_class'):
    return [inspect.signature(fn.model_class.__init__)]
  cls = {'cnn': 'CNN', 'dcn': 'CNN', 'dcnv2': 'CNN', 'dss_v1': 'DSS', 'deform_dss': 'DSS',
         'dss_v2': 'DSSv2', 'sscnn': 'SSCNN', 'sesn': 'SESN', 'resnet_scale': 'ResNetScale',
         'resnet50_scale': 'ResNetScale'}[name]
  module = inspect.getmodule(fn)
  return [inspect.signature(fn), inspect.signature(getattr(module, cls).__init__)]


_NOT_KWARGS = {'rngs', 'kwargs', 'num_classes', 'self'}


def model_kwargs(name: str) -> set[str]:
  """Keyword arguments a model accepts (less those its factory fixes itself)."""
  fixed = set(getattr(MODELS[name], 'fixed_kwargs', ()))
  return {p for sig in _signatures(name) for p in sig.parameters} - fixed - _NOT_KWARGS


def model_defaults(name: str) -> dict:
  """{keyword: default} of every keyword `model_kwargs(name)` names that has one.

  The factory's own default wins over its class's (`dcn` sets deformable=2).
  """
  out = {}
  for sig in reversed(_signatures(name)):
    out.update({k: p.default for k, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty})
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
