"""The adapter SDK: plug a legacy system into the platform without rewriting it."""
