"""ganforge's trainers: GAN families, losses, the training loop, data streaming and metrics. Runs without Ray.

Where things live: cycle.py (the one evaluation cycle every run drives, and the Trainable / Reporter protocols),
loop.py (GANTrainer), catalog.py (every component name, torch-free), families/, losses.py, penalties.py, optim.py,
stabilizers.py (components, registered by name), checkpoint.py and export.py (training state; safetensors + JSON
generators), cache.py (the one cache root), data/ (data sets), metrics/ (scores and sample grids).
"""
