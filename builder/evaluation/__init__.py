"""Scoring systems on note sets: `evaluate` runs the pipeline, `scoring` is the one place that
compares predicted and gold codes, `report` gathers a run's evaluations in a table and chart."""
