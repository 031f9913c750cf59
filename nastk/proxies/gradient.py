"""The shared forward/backward pass of the classic proxies (methods.md section 16), and those proxies.

One train-mode forward of the batch serves all of them; on top of it, only the work the requested
proxies declare they need (``ProxySpec.needs``) is done:

* ``relu_codes``: the kernel of binary ReLU codes, collected by hooks during the forward (nwot);
* ``jacobian``: dsum(logits)/dx, a backward to the input (jacob_cov, epe_nas);
* ``weight_gradients``: dL/dW of the loss L (``loss(logits, y)``, cross-entropy by default), one
  backward to the weights (grad_norm, snip, plain);
* ``activations``: the Conv/Linear outputs a (forward hooks) and dL/da, from the same backward
  (fisher, fisher_channel_sum);
* ``hessian_gradient``: that backward kept differentiable, then H g = d(g . stopgrad(g))/dW by
  double backward (grasp).
"""
from __future__ import annotations

from typing import Callable, Dict, FrozenSet, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nastk.proxies import jacobian as jacobian_scores
from nastk.proxies.layers import ProxyInput, per_layer
from nastk.proxies.nwot import CodeKernel
from nastk.proxies.passes import ProxyPass

#: The needs that take the backward of the loss to the weights.
LOSS_NEEDS = ("weight_gradients", "activations", "hessian_gradient")


def _zeros_for_unused(grads, like):
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


def _hessian_gradient(weights, grads) -> List[torch.Tensor]:
    """H g for g = dL/dW (computed with create_graph): the gradient of g . stopgrad(g)."""
    z = sum((g * g.detach()).sum() for g in grads if g.requires_grad)
    if not (torch.is_tensor(z) and z.requires_grad):  # no weight influences the loss
        return [torch.zeros_like(w) for w in weights]
    return _zeros_for_unused(torch.autograd.grad(z, weights, allow_unused=True), weights)


def _fisher_per_channel(outputs: Dict[str, List[torch.Tensor]], output_grads: Dict[str, List[torch.Tensor]],
                        names: Sequence[str], device) -> List[torch.Tensor]:
    """Per layer: the sum over its output channels c of 0.5 * mean_batch(sum_spatial a_c * dL/da_c)^2.

    A layer called several times (a shared module) adds up its calls, as the reference's hook does;
    a layer never called contributes 0.
    """
    values = []
    for name in names:
        total = torch.zeros((), dtype=torch.float64, device=device)
        for activation, grad in zip(outputs[name], output_grads[name]):
            per_channel = (activation * grad).flatten(2).sum(2) if activation.dim() > 2 else activation * grad
            total = total + 0.5 * per_channel.double().pow(2).mean(0).sum()
        values.append(total)
    return values


def fisher_layer_weights(weights: Sequence[torch.Tensor]) -> List[int]:
    """How many weights each output channel's Fisher value is spread over in the reference fisher.

    The zero-cost-nas definition (Abdelfattah et al. 2021, carried unchanged into NASLib) assigns a
    channel's value to every weight of that channel (``reshape_elements`` expands it to the weight's
    shape) before summing, so layer l counts prod(weight.shape[1:]) times; ``fisher`` is that sum.
    """
    return [int(w[0].numel()) if w.dim() > 0 and len(w) else 0 for w in weights]


class GradientPass(ProxyPass):
    """One train-mode forward (and what backward its proxies need) of the batch.

    Always: ``model``, ``x``, ``y``, ``layer_names`` and ``weights`` (the Conv/Linear weights, in
    module order) and ``logits``. On request (None otherwise): ``loss`` and ``weight_gradients``
    (dL/dW per weight; zeros where a weight does not reach the loss), ``activations`` and
    ``activation_gradients`` (per layer name, one tensor per call of the layer), ``jacobian``
    (float64 host array, one row per example), ``hessian_gradient`` (H g per weight) and
    ``relu_code_kernel`` (the float64 NASWOT kernel K).
    """

    OPTIONAL = ("relu_codes", "jacobian", "weight_gradients", "activations", "hessian_gradient")

    def __init__(self, model, x, y, layer_names: List[str], weights: List[torch.Tensor], logits: torch.Tensor):
        self.model, self.x, self.y, self.logits = model, x, y, logits
        self.layer_names, self.weights = layer_names, weights
        self.loss: Optional[torch.Tensor] = None
        self.weight_gradients: Optional[List[torch.Tensor]] = None
        self.activations: Optional[Dict[str, List[torch.Tensor]]] = None
        self.activation_gradients: Optional[Dict[str, List[torch.Tensor]]] = None
        self.jacobian: Optional[np.ndarray] = None
        self.hessian_gradient: Optional[List[torch.Tensor]] = None
        self.relu_code_kernel: Optional[torch.Tensor] = None

    @classmethod
    def run(cls, inp: ProxyInput, needs: FrozenSet[str]) -> "GradientPass":
        model, x = inp.model, inp.x
        want_jacobian = "jacobian" in needs
        want_loss = any(need in needs for need in LOSS_NEEDS)
        layers = inp.layers
        weights = [module.weight for _, module in layers]
        model.train()
        model.zero_grad(set_to_none=True)
        x = x.detach().clone().requires_grad_(want_jacobian)

        handles, kernel = [], None
        outputs: Dict[str, List[torch.Tensor]] = {name: [] for name, _ in layers}
        if "relu_codes" in needs:
            kernel = CodeKernel(len(x), x.device)
            handles += kernel.hooks(model)
        if "activations" in needs:
            handles += [module.register_forward_hook(lambda _m, _i, out, name=name: outputs[name].append(out))
                        for name, module in layers]
        try:
            with torch.set_grad_enabled(want_jacobian or want_loss):
                logits = model(x)
        finally:
            for handle in handles:
                handle.remove()

        result = cls(model, x, inp.y, [name for name, _ in layers], weights, logits)
        if kernel is not None:
            result.relu_code_kernel = kernel.kernel
        if want_jacobian:
            (jac,) = torch.autograd.grad(logits.sum(), x, retain_graph=want_loss)
            result.jacobian = jac.reshape(len(x), -1).double().cpu().numpy()
        if want_loss:
            result._backward(inp.loss or F.cross_entropy, outputs if "activations" in needs else None,
                             "hessian_gradient" in needs)
        return result

    def _backward(self, loss_fn: Callable, outputs: Optional[Dict[str, List[torch.Tensor]]], hessian: bool) -> None:
        """dL/dW (and dL/da of the captured outputs) in one backward; H g by a second one if asked."""
        weights = self.weights
        self.loss = loss_fn(self.logits, self.y)
        activations = [a for name in self.layer_names for a in outputs[name]] if outputs is not None else []
        grads = torch.autograd.grad(self.loss, weights + activations, create_graph=hessian, allow_unused=True)
        self.weight_gradients = _zeros_for_unused(grads[:len(weights)], weights)
        if outputs is not None:
            flat = iter(_zeros_for_unused(grads[len(weights):], activations))
            self.activations = outputs
            self.activation_gradients = {name: [next(flat) for _ in outputs[name]] for name in self.layer_names}
        if hessian:
            self.hessian_gradient = _hessian_gradient(weights, self.weight_gradients)


# --- the proxies of this pass (registered in nastk.proxies.registry) -------------------------------
def grad_norm(p: GradientPass) -> np.ndarray:
    return per_layer(g.norm() for g in p.weight_gradients)


def snip(p: GradientPass) -> np.ndarray:
    return per_layer((w * g).abs().sum() for w, g in zip(p.weights, p.weight_gradients))


def plain(p: GradientPass) -> np.ndarray:
    return per_layer((w * g).sum() for w, g in zip(p.weights, p.weight_gradients))


def grasp(p: GradientPass) -> np.ndarray:
    return per_layer(-(w * h).sum() for w, h in zip(p.weights, p.hessian_gradient))


def _channels(p: GradientPass) -> List[torch.Tensor]:
    return p.shared("fisher_channels", lambda: _fisher_per_channel(
        p.activations, p.activation_gradients, p.layer_names, p.logits.device))


def fisher_channel_sum(p: GradientPass) -> np.ndarray:
    return per_layer(_channels(p))


def fisher(p: GradientPass) -> np.ndarray:
    spread = fisher_layer_weights(p.weights)
    return per_layer(value * count for value, count in zip(_channels(p), spread))


def jacob_cov(p: GradientPass) -> float:
    return jacobian_scores.jacob_cov(p.jacobian)


def epe_nas(p: GradientPass) -> float:
    return jacobian_scores.epe_nas(p.jacobian, p.y.cpu().numpy())


def nwot(p: GradientPass) -> float:
    return CodeKernel.log_determinant(p.relu_code_kernel)
