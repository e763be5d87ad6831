"""The TF-CLIP family trainer: config and presets, backbone, model, losses, optimiser, identity memory,
and the trial adapter behind the trainer protocol (:mod:`trainers.tfclip.trial`). Submodules import torch;
import them directly."""
