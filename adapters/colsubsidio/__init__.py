"""Caja Colombiana de Subsidio Familiar - Colsubsidio (CO/CCF/860007336): notifies households of the result of
their housing application through its batch process, fed by CSV files in its `salida/` folder
(see `handlers.py` and adapter.yaml)."""
