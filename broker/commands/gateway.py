"""`gel gateway`: run gateway workers on RabbitMQ until stopped."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlparse

import typer

from broker.commands.output import console, err_console, fail
from broker.gateway.runtime import build_gateway, gateway_amqp_url
from broker.logs import configure_logging, get_logger
from broker.security.entities import load_entities
from broker.settings import get_settings
from broker.transport.abc import TransportError
from broker.transport.factory import rabbitmq_answers, transport_kind
from broker.transport.provisioning import ProvisioningError
from broker.transport.topology import ingress_queues, platform_topology

DEFAULT_WORKERS = 2
"""Gateway worker processes `gel gateway` starts unless told otherwise."""


def _worker(index: int, prefetch: int) -> None:
    from broker.transport.rabbitmq import RabbitMQTransport

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    log = get_logger(component="gateway", worker=index)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    transport = RabbitMQTransport(gateway_amqp_url(settings), user_label=f"gel-gateway-{index}")
    parts = build_gateway(settings, transport, prefetch=prefetch)
    parts.gateway.start()
    log.info("gateway.worker_ready")
    stop.wait()
    parts.gateway.stop()
    transport.close()
    parts.close()
    log.info("gateway.worker_stopped")


def gateway(
    workers: Annotated[int, typer.Option(
        "--workers", "-w", min=1, max=64,
        help="Procesos trabajadores que compiten por las colas de entrada.")] = DEFAULT_WORKERS,
    prefetch: Annotated[int, typer.Option("--prefetch", min=1, max=10_000,
                                          help="Mensajes sin confirmar por trabajador.")] = 64,
) -> None:
    """Ejecuta la pasarela: consume las colas de entrada de todas las entidades (gel.entrada.*) y aplica
    análisis, validación, autenticación, autorización, control de duplicados, sello de tiempo, registro y
    enrutamiento a la cola del destinatario.

    Necesita RabbitMQ (el servidor de GEL_AMQP_URL) y la topología aplicada con gel topology apply, que crea
    el usuario de la pasarela y guarda su contraseña en GEL_RABBITMQ_CREDENTIALS_FILE. Una entidad nueva en
    el registro necesita gel topology apply y reiniciar la pasarela.
    Se detiene con Ctrl+C o SIGTERM terminando los mensajes en curso.
    """
    settings = get_settings()
    if transport_kind(settings) != "rabbitmq":
        fail("GEL-GATEWAY-TRANSPORT", "la pasarela necesita RabbitMQ: el transporte embebido solo existe dentro "
             "de un proceso (lo usa gel demo)", "configure GEL_AMQP_URL y GEL_TRANSPORT=rabbitmq, o arranque RabbitMQ")
    if not rabbitmq_answers(settings.amqp_url):
        fail("GEL-GATEWAY-TRANSPORT", "RabbitMQ no responde en GEL_AMQP_URL", "arranque RabbitMQ o corrija la URL")
    from broker.transport.rabbitmq import RabbitMQTransport

    try:
        url = gateway_amqp_url(settings)
    except ProvisioningError as exc:
        fail("GEL-GATEWAY-CREDENTIALS", str(exc), "ejecute gel topology apply en el nodo de RabbitMQ")
    entities = load_entities(settings.entities_file)
    try:
        setup = RabbitMQTransport(url, user_label="gel-gateway-setup")
        try:
            setup.declare(platform_topology(entities))
        finally:
            setup.close()
    except TransportError as exc:
        fail("GEL-GATEWAY-TRANSPORT", f"no fue posible preparar la topología: {exc}",
             "revise que gel topology apply se haya ejecutado con el mismo registro de entidades")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(i, prefetch), name=f"gel-gateway-{i}", daemon=False)
                 for i in range(workers)]
    for process in processes:
        process.start()
    host = urlparse(settings.amqp_url)
    vhost = settings.rabbitmq_vhost
    console.print(f"Pasarela en marcha: {workers} trabajadores sobre RabbitMQ en {host.hostname}:{host.port or 5672}, "
                  f"vhost {vhost}, {len(ingress_queues(entities))} colas de entrada. Ctrl+C o SIGTERM para "
                  "detenerla.", soft_wrap=True)
    raise typer.Exit(_supervise(processes))


def _supervise(processes: Sequence[multiprocessing.process.BaseProcess]) -> int:
    """Wait until asked to stop or until a worker dies; then stop every worker gracefully (SIGTERM)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    crashed: list[str] = []
    while not stop.wait(0.5):
        crashed = [f"{p.name} (código {p.exitcode})" for p in processes if not p.is_alive()]
        if crashed:
            break
    console.print("Deteniendo la pasarela: los trabajadores terminan los mensajes en curso…")
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    if crashed:
        err_console.print(f"error GEL-GATEWAY-WORKER: un trabajador terminó inesperadamente: {', '.join(crashed)}. "
                          "Revise el registro (GEL_LOG_LEVEL=DEBUG) y vuelva a iniciar la pasarela.")
        return 1
    console.print("Pasarela detenida.")
    return 0
