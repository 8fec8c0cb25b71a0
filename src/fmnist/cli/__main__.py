"""``python -m fmnist.cli``: the same as ``fmnist`` (``python -m fmnist``)."""

from fmnist.__main__ import main

main()
