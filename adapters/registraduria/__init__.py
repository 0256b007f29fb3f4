"""The Registraduría's adapter (identity registry, legacy JSON over HTTP)."""
