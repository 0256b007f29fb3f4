"""Fondo Nacional de Vivienda - Fonvivienda (CO/GOB/830121208): previous subsidies, resource pools, scoring and
assignment of the subsidio familiar de vivienda, over its Oracle-style SQL schema (`SFV_*` tables; see
`handlers.py` and adapter.yaml)."""
