"""ganforge's trainers: GAN families, losses, the training loop, data streaming and metrics. Runs without Ray."""
