"""nnU-Net trainer classes of the project (point ``nnUNet_extTrainer`` at this folder)."""
