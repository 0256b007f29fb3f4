"""Caja de Compensación Familiar Compensar (CO/CCF/860066942): notifies households of the result of their
housing application through its batch process, fed by CSV files in its `salida/` folder
(see `handlers.py` and adapter.yaml)."""
