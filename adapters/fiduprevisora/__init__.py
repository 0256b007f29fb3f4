"""Fiduciaria La Previsora S.A. (CO/FID/860525148): pays (moviliza) assigned housing subsidies to the
oferente from the trust it administers, over its own SQL ledger (see `handlers.py` and adapter.yaml)."""
