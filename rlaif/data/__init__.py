"""Data shipped with rlaif: the default constitution, the built-in and held-out prompts."""
