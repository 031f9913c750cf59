"""Zero-cost proxies: score an untrained network from one batch (methods.md sections 7 and 16).

``compute_proxies(model, (x, y), names, device, seed, loss=...)`` returns a :class:`ProxyScores` with
the network-level ``scores`` and per-layer ``layerwise`` values; ``PROXIES`` holds each proxy's
metadata (:class:`ProxySpec`), ``PASSES`` the passes that compute them. A user's proxy is a function
of a pass's result registered with :func:`register_proxy` (see ``docs/notes/23-proxies.md``).
"""
from nastk.proxies.registry import PASSES, PROXIES, ProxySpec, get_proxy, proxy_names, register_proxy

#: names from modules that import torch: loaded on first use, so that the registry (e.g. for
#: ``nastk --help``) stays cheap
_LAZY = {"ProxyScores": "compute", "compute_proxies": "compute", "group_by_pass": "compute", "nan_last": "compute",
         "per_layer": "layers", "ProxyPass": "passes"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nastk.proxies.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nastk.proxies' has no attribute {name!r}")

__all__ = ["PASSES", "PROXIES", "ProxyPass", "ProxySpec", "ProxyScores", "compute_proxies", "get_proxy",
           "group_by_pass", "nan_last", "per_layer", "proxy_names", "register_proxy"]
