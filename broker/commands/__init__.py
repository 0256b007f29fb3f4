"""The `gel` command groups, one module per concern; `broker.cli` assembles them."""
