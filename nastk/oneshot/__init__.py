"""One-shot (weight-sharing) NAS: the supernet trainer, its path and data samplers, and ranking.

* :mod:`nastk.oneshot.trainer`     the one training loop (checkpoints, resume, DDP, metrics)
* :mod:`nastk.oneshot.samplers`    path and data sampler plug-ins: uniform (SPOS) and PA&DA
* :mod:`nastk.oneshot.ranking`     rank architectures with inherited weights against a benchmark
* :mod:`nastk.oneshot.variance`    the supernet gradient variance at fixed weights
* :mod:`nastk.oneshot.data`        fixed subsets, evaluation order, tensor augmentation
* :mod:`nastk.oneshot.distributed` torchrun / DDP plumbing
"""
