"""draft-card: a card measured from a model, every bound with the margin that set it."""
