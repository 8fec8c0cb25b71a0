"""The API's routes, one module per resource: ``images`` (classify, encode, reconstruct),
``generate``, and ``service`` (probes, the bundle's manifest, metrics)."""
