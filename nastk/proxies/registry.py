"""Proxy metadata and the proxy registry.

A proxy is described, not implemented, here: each :class:`ProxySpec` names the *pass* that computes
it (see :mod:`nastk.proxies.compute`), so proxies that need the same forward/backward work are
computed together from one pass instead of once each.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List

from nastk.registry import Registry


@dataclass(frozen=True)
class ProxySpec:
    name: str
    #: Which pass computes it: ``static``, ``gradient``, ``synflow``, ``zen`` or ``grad_sign``.
    pass_name: str
    needs_gradients: bool
    needs_labels: bool
    higher_is_better: bool
    removes_bn: bool
    #: Whether the score is a sum over Conv/Linear layers (then per-layer values are returned too).
    layerwise: bool
    description: str
    #: Raised whenever what the name computes changes, so caches never serve values of an old
    #: definition under the same name (the score cache keys on it).
    version: int = 1

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


PROXIES: Registry[ProxySpec] = Registry("proxy", group="nastk.proxies", instance_of=ProxySpec)


def _add(name, pass_name, needs_gradients, needs_labels, layerwise, description, removes_bn=False,
         higher_is_better=True, version=1) -> None:
    PROXIES.register(name, ProxySpec(name, pass_name, needs_gradients, needs_labels, higher_is_better,
                                     removes_bn, layerwise, description, version))


# name, pass, needs gradients, needs labels, layer-wise, definition (methods.md section 16)
_add("params", "static", False, False, False, "number of parameters")
_add("flops", "static", False, False, False, "multiply-accumulates of Conv/Linear layers (NB201 convention)")
_add("l2_norm", "static", False, False, True, "sum over layers of ||W_l||_2")
_add("grad_norm", "gradient", True, True, True, "sum over layers of ||dL/dW_l||_2")
_add("snip", "gradient", True, True, True, "sum |W * dL/dW|")
_add("plain", "gradient", True, True, True, "sum W * dL/dW (signed)")
_add("grasp", "gradient", True, True, True, "sum -W * (H g), Hessian-gradient product by double backward")
# version 2: spread over the channel's weights as the reference does (version 1 = fisher_channel_sum)
_add("fisher", "gradient", True, True, True,
     "per output channel 0.5 * mean_batch(sum_spatial a * dL/da)^2, times the channel's weight count "
     "prod(W.shape[1:]), summed (zero-cost-nas / NASLib definition)", version=2)
_add("fisher_channel_sum", "gradient", True, True, True,
     "per output channel 0.5 * mean_batch(sum_spatial a * dL/da)^2, summed unweighted (not the published fisher)")
_add("jacob_cov", "gradient", True, False, False,
     "-sum_i log(l_i + k) + 1/(l_i + k), l = eigenvalues of corrcoef of input Jacobians")
_add("epe_nas", "gradient", True, True, False,
     "sum over classes |sum log(|corrcoef of the class's input Jacobians| + k)|")
_add("nwot", "gradient", False, False, False, "log|det K|, K = agreement of binary ReLU codes between inputs")
_add("synflow", "synflow", True, False, True,
     "sum |W * dR/dW| on |W|, all-ones input, float64, BN removed", removes_bn=True)
_add("zen", "zen", False, False, False,
     "log E||f(x) - f(x + 0.01 eps)||_F + sum_BN log sqrt(mean sigma^2), Gaussian weights and inputs")
_add("grad_sign", "grad_sign", True, True, True, "sum_k |sum_i sign(dl_i/dW_k)| (per-example gradients)")
_add("grad_sign_mean", "grad_sign", True, True, False, "grad_sign / number of Conv/Linear weights")


def get_proxy(name: str) -> ProxySpec:
    """The spec of ``name``; :class:`nastk.errors.UnknownNameError` lists the known ones."""
    return PROXIES.get(name)


def proxy_names() -> List[str]:
    return PROXIES.names()
