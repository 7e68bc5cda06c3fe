"""The frameworks' own losses, written as their users write them: what every dtype's bound must let pass.

PyTorch: ``F.cross_entropy`` (and ``F.linear`` before it), autograd for the
gradients. JAX: ``jax.nn.log_softmax`` and plain ``jax.value_and_grad``, no
``custom_vjp``. They are the checker's own yardsticks (``LOSSES`` of
``reference.checker.frameworks.torch`` and ``.jax``), so what the tests pass
is what a low-precision check measures a target against. Each takes the loss
options as keywords, so that ``functools.partial`` fixes them for a check; the
penalty is eq. (3)'s ``reg/2 sum W^2`` (the checker's default ``reg_scale``).
"""

from __future__ import annotations

from reference.checker.frameworks import jax as jax_framework
from reference.checker.frameworks import torch as torch_framework

torch_scores = torch_framework.scores_loss
torch_linear = torch_framework.linear_loss
torch_two_layer = torch_framework.two_layer_loss
torch_linear_ce = torch_framework.linear_cross_entropy
jax_scores = jax_framework.scores_loss
jax_linear = jax_framework.linear_loss
jax_two_layer = jax_framework.two_layer_loss
jax_linear_ce = jax_framework.linear_cross_entropy

KINDS = ("scores", "linear", "two_layer", "linear_ce")
TARGETS = {
    (name, kind): framework.LOSSES[kind]
    for name, framework in (("torch", torch_framework), ("jax", jax_framework))
    for kind in KINDS
}
