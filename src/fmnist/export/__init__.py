"""Export: checkpoints to a verified bundle of ONNX graphs, latent samplers and a manifest."""
