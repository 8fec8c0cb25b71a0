"""Inference from exported bundles: numpy, onnxruntime and Pillow only (no torch, no scikit-learn)."""
