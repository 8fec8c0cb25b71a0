"""Running an exported bundle: numpy, onnxruntime and Pillow only (no torch, no scikit-learn,
nothing of the server or the command line).

``bundle`` verifies a bundle and runs its graphs, ``sessions`` picks onnxruntime providers and
options, ``sampling`` draws latents, ``images`` turns files into the 28x28 input contract and
back, ``stream`` runs many files through a model (a decoding pool beside it), ``signals`` holds
Ctrl-C and SIGTERM back where a block must not be cut, ``evaluation`` scores a bundle on the
official test set.
"""
