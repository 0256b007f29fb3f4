"""The chain orchestrator: chain definitions as data (chains/*.yaml), a durable engine that drives them
across entities, and the orchestrator's place on the bus as entity CO/PLAT/900000002."""
