"""Training: optimizer and learning-rate schedule (paper Table 2), Lightning module and CLI."""
