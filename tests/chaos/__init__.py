"""Chaos: the whole platform as separate processes on the real RabbitMQ and PostgreSQL, a stream of housing and
environmental chains, and a harness that SIGKILLs the gateway, the orchestrator and adapters and restarts
RabbitMQ and PostgreSQL while they run — then counts what was lost and what happened twice.

`make chaos` runs the long form (`python -m tests.chaos`); `tests/chaos/test_chaos.py` runs a short form in
`make test`, after every other test, since it restarts the shared services."""
