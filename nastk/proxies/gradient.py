"""The shared forward/backward pass of the classic proxies (methods.md section 16).

One train-mode forward of the batch serves all of them; on top of it, only the backward work the
requested proxies need is done:

* nwot: ReLU codes collected by hooks during the forward (no backward);
* jacob_cov, epe_nas: dsum(logits)/dx, a backward to the input;
* grad_norm, snip, plain: dL/dW of the cross-entropy L, one backward to the weights;
* fisher, fisher_channel_sum: the same backward, also to the Conv/Linear outputs a (captured by
  forward hooks);
* grasp: the same backward kept differentiable, then H g = d(g . stopgrad(g))/dW by double backward.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F

from nastk.proxies import jacobian
from nastk.proxies.layers import ProxyInput, per_layer
from nastk.proxies.nwot import CodeKernel

JACOBIAN = ("jacob_cov", "epe_nas")
LOSS = ("grad_norm", "snip", "plain", "fisher", "fisher_channel_sum", "grasp")
FISHER = ("fisher", "fisher_channel_sum")


def _zeros_for_unused(grads, like):
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


def _hessian_gradient(weights, grads) -> List[torch.Tensor]:
    """H g for g = dL/dW (computed with create_graph): the gradient of g . stopgrad(g)."""
    z = sum((g * g.detach()).sum() for g in grads if g.requires_grad)
    if not (torch.is_tensor(z) and z.requires_grad):  # no weight influences the loss
        return [torch.zeros_like(w) for w in weights]
    return _zeros_for_unused(torch.autograd.grad(z, weights, allow_unused=True), weights)


def _fisher_per_channel(outputs: Dict[str, List[torch.Tensor]], output_grads, names,
                        device) -> List[torch.Tensor]:
    """Per layer: the sum over its output channels c of 0.5 * mean_batch(sum_spatial a_c * dL/da_c)^2.

    A layer called several times (a shared module) adds up its calls, as the reference's hook does;
    a layer never called contributes 0.
    """
    values, position = [], 0
    for name in names:
        total = torch.zeros((), dtype=torch.float64, device=device)
        for activation in outputs[name]:
            grad = output_grads[position]
            position += 1
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


def run(inp: ProxyInput, names: Sequence[str]) -> Dict[str, object]:
    model, x, y = inp.model, inp.x, inp.y
    want_jacobian = any(n in names for n in JACOBIAN)
    want_loss = any(n in names for n in LOSS)
    layers = inp.layers
    weights = [module.weight for _, module in layers]
    model.train()
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(want_jacobian)

    handles, kernel = [], None
    outputs: Dict[str, List[torch.Tensor]] = {name: [] for name, _ in layers}
    if "nwot" in names:
        kernel = CodeKernel(len(x), x.device)
        handles += kernel.hooks(model)
    if any(n in FISHER for n in names):
        handles += [module.register_forward_hook(lambda _m, _i, out, name=name: outputs[name].append(out))
                    for name, module in layers]
    try:
        with torch.set_grad_enabled(want_jacobian or want_loss):
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()

    out: Dict[str, object] = {}
    if kernel is not None:
        out["nwot"] = kernel.score()
    if want_jacobian:
        (jac,) = torch.autograd.grad(logits.sum(), x, retain_graph=want_loss)
        jac = jac.reshape(len(x), -1).double().cpu().numpy()
        if "jacob_cov" in names:
            out["jacob_cov"] = jacobian.jacob_cov(jac)
        if "epe_nas" in names:
            out["epe_nas"] = jacobian.epe_nas(jac, y.cpu().numpy())
    if want_loss:
        out.update(_loss_proxies(logits, y, weights, [n for n, _ in layers], outputs, names))
    return out


def _loss_proxies(logits, y, weights, layer_names, outputs, names) -> Dict[str, object]:
    loss = F.cross_entropy(logits, y)
    activations = [a for name in layer_names for a in outputs[name]]
    grads = torch.autograd.grad(loss, weights + activations, create_graph="grasp" in names, allow_unused=True)
    weight_grads = _zeros_for_unused(grads[:len(weights)], weights)
    out: Dict[str, object] = {}
    with torch.no_grad():
        if "grad_norm" in names:
            out["grad_norm"] = per_layer(g.norm() for g in weight_grads)
        if "snip" in names:
            out["snip"] = per_layer((w * g).abs().sum() for w, g in zip(weights, weight_grads))
        if "plain" in names:
            out["plain"] = per_layer((w * g).sum() for w, g in zip(weights, weight_grads))
        if any(n in FISHER for n in names):
            output_grads = _zeros_for_unused(grads[len(weights):], activations)
            channels = _fisher_per_channel(outputs, output_grads, layer_names, logits.device)
            if "fisher_channel_sum" in names:
                out["fisher_channel_sum"] = per_layer(channels)
            if "fisher" in names:
                spread = fisher_layer_weights(weights)
                out["fisher"] = per_layer(value * count for value, count in zip(channels, spread))
    if "grasp" in names:
        hessian_grad = _hessian_gradient(weights, weight_grads)
        with torch.no_grad():
            out["grasp"] = per_layer(-(w * h).sum() for w, h in zip(weights, hessian_grad))
    return out
