"""Superintendencia de Notariado y Registro (CO/GOB/899999007): answers consultarPropiedad from the property
registry's SQL tables `predios` and `propietarios` (see `handlers.py`)."""
