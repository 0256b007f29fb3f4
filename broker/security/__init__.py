"""Security layer: PKI, XML signatures, RFC 3161 time stamps, the message log."""
