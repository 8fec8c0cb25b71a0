"""Training side: data, models, losses, Lightning modules, tuning (torch, Lightning, Optuna)."""
