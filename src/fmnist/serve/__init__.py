"""The HTTP server: ``app`` (routes and lifespan), ``schemas``, ``multipart`` (upload parsing),
``middleware`` (body limit, request metrics), ``batching``, ``metrics`` and ``settings``. It runs a
bundle through :mod:`fmnist.runtime`; ``fmnist serve`` (:mod:`fmnist.cli.serve`) starts it."""
