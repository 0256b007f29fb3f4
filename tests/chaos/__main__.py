"""`make chaos` (python -m tests.chaos): the long chaos run, or the short one CI runs with --corto."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import tempfile
from pathlib import Path

from broker.logs import quieten
from tests.chaos.run import FAULTS, SHORT, ChaosConfig, run_chaos
from tests.conftest import AMQP_URL, POSTGRES_URL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make chaos",
        description="Corre cadenas de vivienda y ambientales sobre la plataforma completa (pasarela, orquestador y "
                    "adaptadores como procesos, RabbitMQ y PostgreSQL reales) mientras mata procesos con SIGKILL y "
                    "reinicia RabbitMQ y PostgreSQL en momentos al azar; al final cuenta los casos iniciados, "
                    "terminados, perdidos y los efectos duplicados. Reinicia los servicios locales: no lo corra "
                    "junto a otras pruebas.")
    parser.add_argument("--corto", action="store_true", help="la versión corta que corre make test")
    parser.add_argument("--vivienda", type=int, help="casos de vivienda (por defecto 200; corto: 24)")
    parser.add_argument("--ambientales", type=int, help="casos ambientales (por defecto 10; corto: 2)")
    parser.add_argument("--ventana", type=float, help="segundos durante los que se radican casos e inyectan fallas")
    parser.add_argument("--fallas", default=",".join(FAULTS),
                        help=f"tipos de falla separados por comas (de: {', '.join(FAULTS)})")
    parser.add_argument("--semilla", type=int, default=2026, help="semilla del azar (repetible)")
    parser.add_argument("--carpeta", type=Path, help="dónde dejar registros y bases heredadas (por defecto, temporal)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the processes and drop what was created
    faults = tuple(f.strip() for f in args.fallas.split(",") if f.strip())
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"tipos de falla desconocidos: {', '.join(unknown)} (use {', '.join(FAULTS)})")
    config = dataclasses.replace(SHORT if args.corto else ChaosConfig(), faults=faults, seed=args.semilla)
    for name, value in (("housing", args.vivienda), ("environmental", args.ambientales), ("window", args.ventana)):
        if value is not None:
            config = dataclasses.replace(config, **{name: value})
    quieten("WARNING")
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # its reconnect attempts are the point here
    folder = args.carpeta or Path(tempfile.mkdtemp(prefix="gel-caos-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[caos] registros de cada proceso en {folder / 'registros'}", flush=True)
    report = run_chaos(config, folder, amqp_url=AMQP_URL, postgres_url=POSTGRES_URL)
    print("\n".join(report.lines()), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
