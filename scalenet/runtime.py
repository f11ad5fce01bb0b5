"""What training and evaluation share: the device mesh, the model on it, the eval step.

A 1-D mesh ('data',) over every device of every process: batches are sharded
along it, parameters replicated (`make_mesh`, `check_batch`, `shard_batch`).
`create_model` puts a model's eval-mode state on the mesh; `evaluate_split`
runs the jitted `eval_step` over a whole split and sums on the host. Both
`scalenet.train` and `scalenet.evaluate` build on this module.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from scalenet import models, transforms
from scalenet.data import normalize, pipeline


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """1-D mesh ('data',) over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.sharding.Mesh(np.array(devices), ('data',))


def check_batch(batch_size: int, mesh, name: str = 'batch_size') -> None:
  if batch_size % mesh.size:
    raise ValueError(f'config.{name} = {batch_size} must be divisible by the number of '
                     f'devices ({mesh.size}).')


def create_model(config, num_classes: int, mesh):
  """(eval_graphdef, model_state) of the model alone, replicated over the mesh."""
  model = models.get_model(config.model_name, num_classes=num_classes,
                           rngs=nnx.Rngs(config.seed), **config.model)
  model.eval()
  eval_def, state = nnx.split(model)
  return eval_def, jax.device_put(state, NamedSharding(mesh, P()))


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing) \
      if label_smoothing else jax.nn.one_hot(labels, logits.shape[-1])
  return optax.softmax_cross_entropy(logits, targets)


def _eval_step(graphdef, state, batch, factor, rescale: transforms.RescaleSpec,
               input_norm: str = 'none'):
  """Per example of a masked batch: correct (0/1), loss and mask, each [B].

  Images in [0, 1] are first rescaled by L_s (`rescale`, static and hashed
  by value) with the traced `factor` (skipped at 1.0), inside the same
  program: one compilation per input shape serves every factor. Then
  normalised.

  Nothing is summed over the batch here: the outputs stay sharded like the
  batch and `evaluate_split` sums them on the host, so the program has no
  cross-device all-reduce, which can stall between simulated CPU devices on a
  loaded machine (XLA then aborts: `rendezvous.cc ... Termination timeout`).
  """
  model = nnx.merge(graphdef, state)
  images = jax.lax.cond(factor == 1.0, lambda x: x, lambda x: rescale(x, factor),
                        batch['image'])
  logits = model(normalize.normalize(images, input_norm))
  mask = batch['mask']
  return {'correct': (jnp.argmax(logits, -1) == batch['label']) * mask,
          'loss': cross_entropy(logits, batch['label']) * mask,
          'count': mask}


eval_step = jax.jit(_eval_step, static_argnums=(0, 4, 5))


def shard_batch(batch: dict, mesh) -> dict:
  """This process's numpy share of a global batch -> global arrays sharded on 'data'."""
  sharding = NamedSharding(mesh, P('data'))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def evaluate_split(eval_def, state, split: pipeline.Split, batch_size: int, mesh,
                   factor: float = 1.0, rescale: transforms.RescaleSpec = transforms.DEFAULT,
                   input_norm: str = 'none') -> dict:
  """Accuracy and mean loss on a whole split (no example dropped).

  Args:
    eval_def, state: the model's eval-mode graphdef and its state.
    split, batch_size, mesh: the data, the global batch, the device mesh.
    factor: images rescaled by L_s = `rescale` with this factor first, e.g.
      accuracy at a scale the data set does not store; 1.0: as stored.
    input_norm: a key of data.normalize.NORMS, applied after the rescale.
  """
  totals = None
  factor = jnp.float32(factor)
  for batch in pipeline.eval_batches(split, batch_size, process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    out = eval_step(eval_def, state, shard_batch(batch, mesh), factor, rescale, input_norm)
    # Per example slot, elementwise: stays sharded, no cross-device reduction.
    totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
  totals = {k: _host_sum(v) for k, v in totals.items()}
  return {'accuracy': totals['correct'] / totals['count'],
          'loss': totals['loss'] / totals['count']}


def _host_sum(x: jax.Array) -> float:
  """The sum of a batch-sharded array, on the host (every process's shards)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    x = multihost_utils.process_allgather(x, tiled=True)
  return float(np.sum(np.asarray(jax.device_get(x)), dtype=np.float64))
