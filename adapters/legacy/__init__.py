"""Stand-ins for entities' legacy systems, used by the tests and the demo (never by the platform itself).

`identity_app`: the identity registry's legacy JSON service (FastAPI), with fault injection.
"""
