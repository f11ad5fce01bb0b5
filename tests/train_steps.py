"""A plain Adam loop shared by the tests that check a model trains."""

import optax
from flax import nnx


def adam_losses(model, x, y, *, steps: int, lr: float = 1e-2) -> list[float]:
  """Cross-entropy losses of `steps` Adam steps of `model` on one batch (x, y)."""
  opt = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss

  return [float(step(model, opt)) for _ in range(steps)]
