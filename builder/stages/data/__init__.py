"""Training and evaluation data: CodiEsp, synthetic notes, hub datasets -> contract examples."""
