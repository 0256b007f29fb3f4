"""`gel sign` and `gel verify` (placeholder until the security layer lands)."""
