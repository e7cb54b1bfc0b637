"""Image-to-image translation: pix2pix (paired) and CycleGAN (unpaired) networks, losses, trainer and export.

The families are registered in trainers/families/translation.py and declared in trainers/catalog.py (task
"translation"); trainers/tasks.py picks `TranslationTrainer` for them, so their trials run through the same Tune
trial, checkpoints, PBT and MLflow path as every GAN.
"""
