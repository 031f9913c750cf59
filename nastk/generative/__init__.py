"""Generative models in nastk: FID / IS / KID from in-project feature networks, the adversarial training
step, and EAGAN's two-stage evolutionary search of GAN generators and discriminators (methods.md 5)."""
