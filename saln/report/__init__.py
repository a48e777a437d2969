"""Reports built from the train stage's outputs."""
