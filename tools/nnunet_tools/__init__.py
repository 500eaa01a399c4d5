"""Tools for nnU-Net v2: import trained models into triton-models/, export phantom datasets."""
