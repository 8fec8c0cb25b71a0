"""The bundle's contract and the set of models: what every stage reads, declared once (standard library only)."""
