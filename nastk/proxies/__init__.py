"""Zero-cost proxies: score an untrained network from one batch (methods.md sections 7 and 16).

``compute_proxies(model, (x, y), names, device, seed)`` returns a :class:`ProxyScores` with the
network-level ``scores`` and per-layer ``layerwise`` values; ``PROXIES`` holds each proxy's
metadata (:class:`ProxySpec`).
"""
from nastk.proxies.compute import ProxyScores, compute_proxies, group_by_pass, nan_last
from nastk.proxies.registry import PROXIES, ProxySpec, get_proxy, proxy_names

__all__ = ["PROXIES", "ProxySpec", "ProxyScores", "compute_proxies", "get_proxy", "group_by_pass", "nan_last",
           "proxy_names"]
