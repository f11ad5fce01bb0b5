"""Training: data-parallel jitted steps over a device mesh, orbax resume, metrics.

Data parallelism follows current JAX: a 1-D mesh ('data',) over every device
of every process, the batch sharded along it, parameters and optimizer state
replicated, one `jax.jit` step. XLA inserts the gradient all-reduce and
BatchNorm's batch statistics are means over the whole global batch, so the
step is the single-device step on the global batch. Multi-host: call
`jax.distributed.initialize()` first (train.py --distributed); every process
then feeds its share of each global batch.
"""

from __future__ import annotations

import contextlib
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from scalenet import checkpoint, config as config_lib, fourier, metrics as metrics_lib, models
from scalenet import runtime
from scalenet import run_record, transforms
from scalenet.data import normalize, pipeline


def make_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  lr, total = config.learning_rate, config.num_epochs * steps_per_epoch
  if config.schedule == 'constant':
    main = optax.constant_schedule(lr)
  elif config.schedule == 'step':
    main = optax.piecewise_constant_schedule(
        lr, {int(e * steps_per_epoch): config.lr_decay_factor for e in config.lr_decay_epochs})
  else:
    main = optax.cosine_decay_schedule(lr, max(total, 1))
  warmup = int(config.warmup_epochs * steps_per_epoch)
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(config, schedule) -> optax.GradientTransformation:
  """Built once per run: the schedule advances with the optimizer's own step count."""
  if config.optimizer == 'adamw':
    return optax.adamw(schedule, weight_decay=config.weight_decay)
  base = (optax.sgd(schedule, momentum=config.momentum, nesterov=False)
          if config.optimizer == 'sgd' else optax.adam(schedule))
  if config.weight_decay:
    return optax.chain(optax.add_decayed_weights(config.weight_decay), base)
  return base


def create_state(config, num_classes: int, tx, mesh):
  """(train_graphdef, eval_graphdef, state): state of (model, optimizer), replicated.

  eval_graphdef is the model's alone in eval mode: use it with state[0].
  """
  model = models.get_model(config.model_name, num_classes=num_classes,
                           rngs=nnx.Rngs(config.seed), **config.model)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  model.train()
  train_def, state = nnx.split((model, optimizer))
  model.eval()
  eval_def, _ = nnx.split(model)
  return train_def, eval_def, jax.device_put(state, NamedSharding(mesh, P()))


def _all_finite(tree) -> jax.Array:
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def stack_loss(stack, labels, label_smoothing: float = 0.0):
  """Rahman & Yeh's loss on a prediction stack [B, R, K] (one entry per
  resolution, lowest first): the sum of the entries' mean cross-entropies plus
  0.001 times every rise of it from one entry to the next (their `get_loss`)."""
  ce = jnp.stack([runtime.cross_entropy(stack[:, j], labels, label_smoothing).mean()
                  for j in range(stack.shape[1])])
  return ce.sum() + 0.001 * jnp.maximum(ce[1:] - ce[:-1], 0.0).sum()


def step_resolution(config, step: int) -> int | None:
  """The grid size of training step `step` under config.train_resolutions
  (None: the data's own); a function of the seed and the step only."""
  if not config.train_resolutions:
    return None
  return int(np.random.default_rng([config.seed, step]).choice(config.train_resolutions))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5, 6), donate_argnums=1)
def train_step(graphdef, state, batch, label_smoothing: float = 0.0, input_norm: str = 'none',
               resolution: int | None = None, loss: str = 'logits'):
  """One optimizer step on a (sharded) global batch -> (state, metrics).

  resolution: None, or the n x n grid the images are ideally resampled to
  first (config.train_resolutions); loss: config.loss ('stack': `stack_loss`
  of the model's stack_logits, accuracy from its last entry).
  metrics['finite'] is 1.0 when the loss and the whole new state are finite:
  the loop checks it before every save, so no non-finite state is saved.
  """
  model, optimizer = nnx.merge(graphdef, state)
  images = batch['image']
  if resolution is not None and resolution != images.shape[1]:
    images = fourier.ideal_resample(images.astype(jnp.float32), resolution)

  def loss_fn(model):
    x = normalize.normalize(images, input_norm)
    if loss == 'stack':
      stack = model.stack_logits(x)
      return stack_loss(stack, batch['label'], label_smoothing), stack[:, -1]
    logits = model(x)
    return runtime.cross_entropy(logits, batch['label'], label_smoothing).mean(), logits

  (value, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  new_state = nnx.state((model, optimizer))
  metrics = {
      'loss': value,
      'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label']),
      'grad_norm': optax.tree.norm(grads),
      'param_norm': optax.tree.norm(nnx.state(model, nnx.Param)),
      'finite': (jnp.isfinite(value) & _all_finite(new_state)).astype(jnp.float32),
  }
  return new_state, metrics


def check_training_inputs(config, eval_def, model_state, image_shape) -> None:
  """Refuses, before any step, a config.loss or config.train_resolutions the
  model cannot train with, naming the model and the model's own error."""
  model = nnx.merge(eval_def, model_state)
  if config.loss == 'stack' and not hasattr(model, 'stack_logits'):
    raise ValueError(f"config.loss='stack' needs a model with stack_logits (a prediction "
                     f'per resolution, e.g. fourier_se_mnist); {config.model_name} has none.')
  # The function the step trains: the stack for loss='stack', else the logits.
  fn = ((lambda m, v: m.stack_logits(v)) if config.loss == 'stack' else (lambda m, v: m(v)))
  for n in sorted(set(config.train_resolutions)):
    x = jax.ShapeDtypeStruct((1, n, n, image_shape[-1]), jnp.float32)
    try:
      jax.eval_shape(lambda s, v: fn(nnx.merge(eval_def, s), v), model_state, x)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f'config.train_resolutions: {config.model_name} does not take '
                       f'{n} x {n} inputs ({type(e).__name__}: {str(e)[:300]}).') from e


def _progress(total, initial, enabled):
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, desc='train', unit='step',
              disable=not enabled or jax.process_index() != 0, dynamic_ncols=True)


def train_and_evaluate(config, workdir: str, datasets: pipeline.Datasets | None = None,
                       mesh=None) -> dict:
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Keeps the latest checkpoints (for resuming) and, beside them, the one with
  the best validation accuracy (saved on strict improvement). Holds the
  workdir's lock throughout. Every step's loss and state are checked for
  finite values before each save, so a failing run keeps its good checkpoints.

  Args:
    config: an ml_collections.ConfigDict (configs/*.py), validated here.
    workdir: checkpoints, best/, config.json, metrics.jsonl, TensorBoard files.
    datasets: optional pre-loaded data (tests); by default from `config`.
    mesh: optional device mesh ('data',); by default every device.

  Returns:
    The last logged training metrics and validation accuracy.

  Raises:
    ValueError: a bad config; CheckpointError: an unusable checkpoint, or a
    resume whose model or data keys differ from the run's; WorkdirLocked:
    another process trains in `workdir`; FloatingPointError: a non-finite
    loss or state, or a diverging loss (naming the step; nothing saved).
  """
  config_lib.validate(config)
  lock = (checkpoint.workdir_lock(workdir) if jax.process_index() == 0
          else contextlib.nullcontext())
  with lock:
    return _train(config, workdir, datasets, mesh or runtime.make_mesh())


def _train(config, workdir, datasets, mesh) -> dict:
  runtime.check_batch(config.batch_size, mesh)
  runtime.check_batch(config.eval_batch_size, mesh, 'eval_batch_size')
  run_record.check_not_failed(workdir)
  changes = run_record.write_config(workdir, config)  # Before the data: a mismatch fails fast.
  if datasets is None:  # Training reads only the validation split of the evaluation splits.
    wanted = config.eval_splits or ['validation']
    datasets = pipeline.get_datasets(config, eval_splits=[s for s in wanted if s == 'validation']
                                     or None)
  steps_per_epoch = datasets.steps_per_epoch(config.batch_size)
  if steps_per_epoch < 1:
    raise ValueError(f'config.batch_size {config.batch_size} exceeds the training set '
                     f'({len(datasets.train)} examples).')
  total_steps = config.num_epochs * steps_per_epoch
  schedule = make_schedule(config, steps_per_epoch)
  train_def, eval_def, state = create_state(config, datasets.num_classes,
                                            make_optimizer(config, schedule), mesh)
  check_training_inputs(config, eval_def, state[0], datasets.image_shape)
  mngr = checkpoint.manager(workdir, keep=config.keep_checkpoints,
                            save_every=config.checkpoint_every_steps)
  best_mngr = checkpoint.best_manager(workdir)
  state, start = checkpoint.restore(mngr, state)
  best = checkpoint.best_meta(best_mngr) or {'validation_accuracy': -1.0}
  if jax.process_index() == 0:
    run_record.record_changes(workdir, start, changes, config)
  writer = metrics_lib.MetricWriter(workdir, enabled=jax.process_index() == 0,
                                    resume_step=start)
  batches = pipeline.train_batches(
      datasets.train, config.batch_size, seed=config.seed, start_step=start,
      augment_scale=config.augment_scale,
      augment_rescale=transforms.RescaleSpec(**config.augment_rescale),
      process_index=jax.process_index(), process_count=jax.process_count())
  last = {}
  halt = config.halt_after_steps
  end = total_steps if halt is None else min(total_steps, halt)
  bar = _progress(total_steps, start, config.progress_bar)
  guard = metrics_lib.FiniteGuard(
      saved_step=start, reference=metrics_lib.first_logged_loss(workdir) if start else None)
  pending, t0, step = [], time.perf_counter(), start
  try:
    for step in range(start + 1, end + 1):
      state, m = train_step(train_def, state, runtime.shard_batch(next(batches), mesh),
                            config.label_smoothing, config.input_norm,
                            step_resolution(config, step), config.loss)
      pending.append(m)
      guard.add(step, m)
      epoch, rest = divmod(step, steps_per_epoch)
      validate = ('validation' in datasets.eval and not rest
                  and epoch % config.eval_every_epochs == 0)
      log = step % config.log_every_steps == 0 or step == end
      save = step == end or mngr.should_save(step)
      if log or save or validate:
        guard.check()  # One host sync; raises before anything non-finite is saved.
        bar.update(step - bar.n)  # Steps finished, not merely dispatched.
      if log:
        host = jax.device_get(pending)
        last = {k: float(np.mean([h[k] for h in host])) for k in host[0] if k != 'finite'}
        last['learning_rate'] = float(schedule(step - 1))
        last['examples_per_s'] = len(host) * config.batch_size / (time.perf_counter() - t0)
        writer.write(step, last, 'train/')
        bar.set_postfix(loss=f"{last['loss']:.4f}", acc=f"{last['accuracy']:.3f}")
        pending, t0 = [], time.perf_counter()
      if save:
        checkpoint.save(mngr, step, state, force=step == end)  # halts save too
        guard.saved_step = step
      if validate:
        val = runtime.evaluate_split(eval_def, state[0], datasets.eval['validation'],
                             config.eval_batch_size, mesh, input_norm=config.input_norm)
        writer.write(step, val, 'validation/')
        last.update({f'validation_{k}': v for k, v in val.items()})
        improved = val['accuracy'] > best['validation_accuracy']
        if improved:  # Strict improvement, as the published protocol.
          best = {'step': step, 'epoch': epoch, 'validation_accuracy': val['accuracy']}
          checkpoint.save_best(best_mngr, step, state, best)
        bar.write(f'epoch {epoch}: ' + metrics_lib.format_scalars(
            {'val_acc': val['accuracy'], 'val_loss': val['loss']}) + (' (best)' * improved))
    if end < total_steps and jax.process_index() == 0:
      bar.write(f'halted after step {end} of {total_steps} (config.halt_after_steps={halt}); '
                'run again without it to continue from this checkpoint.')
  except FloatingPointError as e:
    if jax.process_index() == 0:
      path = run_record.write_failure(workdir, step, guard.saved_step, e)
      e.args = (f'{e} The failure is recorded in {path}: a rerun refuses to resume '
                'from these checkpoints until you choose (see that file).',)
    raise
  finally:
    bar.close()
    for mg in (mngr, best_mngr):
      mg.wait_until_finished()  # a crash never loses a checkpoint in flight
      mg.close()
    writer.close()
  last['step'] = step
  if 'step' in best:
    last['best'] = best
  return last
