"""Query strategies; each registers in :data:`nastk.strategy.STRATEGIES`."""
