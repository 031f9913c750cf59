"""Quantization for nastk: switchable fake quantizers (``quantizers``), quantized conv / linear layers
(``layers``), BitOps and model size (``bitops``), the mixed-precision transform of any supernet space
(``mixed_precision``). Submodules are imported on demand (they need torch)."""
