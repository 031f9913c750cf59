"""One-shot (weight-sharing) NAS: the supernet trainer, its path and data samplers, and ranking.

* :mod:`nastk.oneshot.trainer`     the one training loop (checkpoints, resume, DDP, metrics)
* :mod:`nastk.oneshot.samplers`    path and data sampler plug-ins: uniform (SPOS) and PA&DA
* :mod:`nastk.oneshot.ranking`     rank architectures with inherited weights against a benchmark
* :mod:`nastk.oneshot.variance`    the supernet gradient variance at fixed weights
* :mod:`nastk.oneshot.splits`        the trained, held-out and unseen parts of a run's training images
* :mod:`nastk.oneshot.ddp` torchrun / DDP plumbing
"""
