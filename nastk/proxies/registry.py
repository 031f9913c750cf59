"""Proxy metadata, the proxy registry and the pass registry: the extension points of nastk's proxies.

A proxy is a function ``fn(pass_result) -> float | per-layer ndarray`` of what one *pass* computed for
a network (see :mod:`nastk.proxies.passes`), plus the :class:`ProxySpec` that says which pass, which
optional pieces of that pass it needs (``needs``), and how to rank it. Proxies of the same pass share
one run of it, so a user's proxy costs no extra forward or backward.

Built-in proxies are registered exactly as a user's are: a :class:`ProxySpec` whose ``function`` is
``"module:function"`` (imported on first use, so listing proxies stays cheap). A user registers with
:func:`register_proxy` (a decorator), ``PROXIES.register(name, ProxySpec(...))``, an entry point of
group ``nastk.proxies`` naming either, or simply names ``package.module:function`` wherever a proxy
name is taken (``--proxies``, ``--evaluator proxy:...``). Passes are registered the same way
(:data:`PASSES`, entry-point group ``nastk.proxy_passes``), so a package can add a pass too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

from nastk.errors import PluginError
from nastk.registry import Registry, _import, describe_object


@dataclass(frozen=True)
class ProxySpec:
    name: str
    #: Which pass computes it: a name of :data:`PASSES` (``static``, ``gradient``, ``synflow``, ``zen``,
    #: ``grad_sign``, or a package's own).
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
    #: ``fn(pass_result) -> float | per-layer ndarray``, or ``"package.module:function"`` naming it.
    function: Union[str, Callable[[Any], Any], None] = None
    #: Optional pieces of the pass this proxy reads (e.g. ``("jacobian",)``); the pass computes a piece
    #: only when a requested proxy needs it.
    needs: Tuple[str, ...] = field(default=())

    def to_dict(self) -> Dict[str, object]:
        row = asdict(self)
        row["function"] = self.function if isinstance(self.function, str) or self.function is None \
            else f"{self.function.__module__}:{self.function.__qualname__}"
        row["needs"] = list(self.needs)
        return row

    def resolve_function(self) -> Callable[[Any], Any]:
        """The proxy function (importing a ``"module:function"`` name); one :class:`PluginError` line
        when it names nothing callable."""
        fn = self.function
        if isinstance(fn, str):
            fn = _import(fn, "proxy function", self.name)
        if not callable(fn):
            what = "names no function" if fn is None else f"has {describe_object(fn)} as its function"
            raise PluginError(f"proxy {self.name!r} {what}; a proxy function is fn(pass_result) -> float "
                              f"or per-layer array")
        return fn


def _is_proxy(obj: Any) -> bool:
    return isinstance(obj, ProxySpec) or isinstance(getattr(obj, "proxy_spec", None), ProxySpec)


PROXIES: Registry[ProxySpec] = Registry("proxy", group="nastk.proxies",
                                        check=(_is_proxy, "a ProxySpec or a function decorated with "
                                                          "nastk.proxies.register_proxy"))

#: Pass classes by name (subclasses of :class:`nastk.proxies.passes.ProxyPass`).
PASSES: Registry[type] = Registry("proxy pass", group="nastk.proxy_passes",
                                  subclass_of="nastk.proxies.passes:ProxyPass")
PASSES.register("static", "nastk.proxies.static:StaticPass")
PASSES.register("gradient", "nastk.proxies.gradient:GradientPass")
PASSES.register("synflow", "nastk.proxies.synflow:SynflowPass")
PASSES.register("zen", "nastk.proxies.zen:ZenPass")
PASSES.register("grad_sign", "nastk.proxies.gradsign:GradSignPass")


def register_proxy(name: str, pass_name: str, needs: Sequence[str] = (), needs_labels: bool = False,
                   higher_is_better: bool = True, layerwise: bool = False, description: str = "",
                   needs_gradients: bool = False, removes_bn: bool = False, version: int = 1,
                   function: Union[str, Callable, None] = None):
    """Register a proxy computed from ``pass_name``'s result. As a decorator (``function`` omitted)::

        @register_proxy("my_proxy", pass_name="gradient", needs=("weight_gradients",), needs_labels=True)
        def my_proxy(p):
            return per_layer((w * g).pow(2).sum() for w, g in zip(p.weights, p.weight_gradients))

    The function gets a ``proxy_spec`` attribute, so ``package.module:my_proxy`` names it too. With
    ``function`` (a callable or ``"package.module:function"``) it registers that and returns the spec.
    ``needs_gradients`` and ``removes_bn`` are metadata (``nastk proxies list``); ``version`` must be
    raised whenever the definition changes (score caches key on it).
    """
    def make(fn) -> ProxySpec:
        spec = ProxySpec(name, pass_name, needs_gradients, needs_labels, higher_is_better, removes_bn, layerwise,
                         description or (getattr(fn, "__doc__", None) or "").strip().split("\n")[0],
                         version, fn, tuple(needs))
        PROXIES.register(name, spec)
        return spec

    if function is not None:
        return make(function)

    def decorator(fn):
        fn.proxy_spec = make(fn)
        return fn

    return decorator


def get_proxy(name: str) -> ProxySpec:
    """The spec of ``name`` (a registered name, an entry point, or ``package.module:function``);
    :class:`nastk.errors.UnknownNameError` lists the known ones."""
    obj = PROXIES.get(name)
    return obj if isinstance(obj, ProxySpec) else obj.proxy_spec


def proxy_names() -> List[str]:
    return PROXIES.names()


def _builtin(name, pass_name, needs, needs_gradients, needs_labels, layerwise, description, removes_bn=False,
             version=1) -> None:
    module = {"static": "static", "gradient": "gradient", "synflow": "synflow", "zen": "zen",
              "grad_sign": "gradsign"}[pass_name]
    register_proxy(name, pass_name, needs, needs_labels, True, layerwise, description, needs_gradients, removes_bn,
                   version, function=f"nastk.proxies.{module}:{name}")


# name, pass, needs, needs gradients, needs labels, layer-wise, definition (methods.md section 16)
_builtin("params", "static", (), False, False, False, "number of parameters")
_builtin("flops", "static", (), False, False, False, "multiply-accumulates of Conv/Linear layers (NB201 convention)")
_builtin("l2_norm", "static", (), False, False, True, "sum over layers of ||W_l||_2")
_builtin("grad_norm", "gradient", ("weight_gradients",), True, True, True, "sum over layers of ||dL/dW_l||_2")
_builtin("snip", "gradient", ("weight_gradients",), True, True, True, "sum |W * dL/dW|")
_builtin("plain", "gradient", ("weight_gradients",), True, True, True, "sum W * dL/dW (signed)")
_builtin("grasp", "gradient", ("hessian_gradient",), True, True, True,
         "sum -W * (H g), Hessian-gradient product by double backward")
# version 2: spread over the channel's weights as the reference does (version 1 = fisher_channel_sum)
_builtin("fisher", "gradient", ("activations",), True, True, True,
         "per output channel 0.5 * mean_batch(sum_spatial a * dL/da)^2, times the channel's weight count "
         "prod(W.shape[1:]), summed (zero-cost-nas / NASLib definition)", version=2)
_builtin("fisher_channel_sum", "gradient", ("activations",), True, True, True,
         "per output channel 0.5 * mean_batch(sum_spatial a * dL/da)^2, summed unweighted (not the published fisher)")
_builtin("jacob_cov", "gradient", ("jacobian",), True, False, False,
         "-sum_i log(l_i + k) + 1/(l_i + k), l = eigenvalues of corrcoef of input Jacobians")
_builtin("epe_nas", "gradient", ("jacobian",), True, True, False,
         "sum over classes |sum log(|corrcoef of the class's input Jacobians| + k)|")
_builtin("nwot", "gradient", ("relu_codes",), False, False, False,
         "log|det K|, K = agreement of binary ReLU codes between inputs")
_builtin("synflow", "synflow", (), True, False, True,
         "sum |W * dR/dW| on |W|, all-ones input, float64, BN removed", removes_bn=True)
_builtin("zen", "zen", (), False, False, False,
         "log E||f(x) - f(x + 0.01 eps)||_F + sum_BN log sqrt(mean sigma^2), Gaussian weights and inputs")
_builtin("grad_sign", "grad_sign", (), True, True, True, "sum_k |sum_i sign(dl_i/dW_k)| (per-example gradients)")
_builtin("grad_sign_mean", "grad_sign", (), True, True, False, "grad_sign / number of Conv/Linear weights")
