"""Constructora Horizonte Social S.A.S. (CO/PRIV/900123451), an oferente of the housing window: it provides no
service; it subscribes to Fonvivienda's asignarSubsidio event (catalog fan-out) and hands each decision to
its sales system as a CSV file (see `eventos.py` and adapter.yaml)."""
