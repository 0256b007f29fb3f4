"""Entity adapters: the SDK (`adapters.sdk`), the reference connectors and the chains' entity adapters."""
