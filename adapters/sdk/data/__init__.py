"""Reference data shipped with the adapter SDK (the DANE DIVIPOLA table, see `adapters.sdk.mapping`)."""
