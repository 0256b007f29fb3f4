"""`gel certs`: the development PKI (root CA, TSA, one signing certificate per entity)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from broker.commands.output import console, fail, print_json
from broker.gelxml import GelFault
from broker.security.entities import EntityRegistry, load_entities
from broker.security.pki import Algorithm, DevPKI, IssuedCertificate
from broker.settings import get_settings

app = typer.Typer(
    help="PKI de desarrollo: CA raíz, autoridad de estampado de tiempo (TSA) y un certificado de firma por "
    "entidad. En producción la CA es una entidad de certificación acreditada (ver certs/README.md).",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None, typer.Option("--dir", help="Carpeta de la PKI (por defecto GEL_CERTS_DIR, certs/dev).")
]
AlgorithmOption = Annotated[
    str, typer.Option("--algoritmo", help="Algoritmo de las claves nuevas: ec (ECDSA P-256) o rsa (RSA-2048).")
]


def _pki(directory: Path | None) -> DevPKI:
    return DevPKI(directory or get_settings().certs_dir)


def _entities() -> EntityRegistry:
    path = get_settings().entities_file
    try:
        return load_entities(path)
    except (OSError, ValueError) as exc:
        fail("GEL-CONFIG-ENTITIES", f"no se pudo leer el registro de entidades {path}: {exc}",
             "revise deploy/entities.yaml o la variable GEL_ENTITIES_FILE")


def _algorithm(value: str) -> Algorithm:
    if value not in ("ec", "rsa"):
        fail("GEL-PKI-ALGORITHM", f"algoritmo desconocido: {value}", "use --algoritmo ec o --algoritmo rsa")
    return "ec" if value == "ec" else "rsa"


def _table(rows: list[IssuedCertificate]) -> Table:
    table = Table("serie", "entidad", "nombre", "alg.", "válido hasta", "estado")
    for row in rows:
        state = f"[red]revocado {row.revoked_at[:10]}[/]" if row.revoked_at else "[green]vigente[/]"
        table.add_row(row.serial[:12], row.entity, row.name[:40], row.algorithm, row.not_after[:10], state)
    return table


@app.command("init")
def init(
    directory: DirOption = None,
    algorithm: AlgorithmOption = "ec",
    force: Annotated[bool, typer.Option("--force", help="Borra la PKI existente y crea una nueva.")] = False,
) -> None:
    """Crea la CA raíz, la TSA, la CRL y un certificado de firma para cada entidad del registro.

    Es idempotente: si la PKI ya existe, solo emite certificados para las entidades que no tienen uno.
    """
    pki = _pki(directory)
    try:
        issued = pki.initialise(_entities(), algorithm=_algorithm(algorithm), force=force)
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    console.print(f"PKI de desarrollo en {pki.directory}:")
    console.print(f"  CA raíz       {pki.root_cert_path}")
    console.print(f"  TSA           {pki.tsa_cert_path}")
    console.print(f"  CRL           {pki.crl_path}")
    console.print(f"  {len(issued)} certificados de entidad emitidos ahora; {len(pki.list())} en total.")
    console.print(f"Verifique una firma con: xmlsec1 --verify --trusted-pem {pki.root_cert_path} firmado.xml")


@app.command("issue")
def issue(
    entity_id: Annotated[str, typer.Argument(help="Entidad, p. ej. CO/GOB/899999040.", show_default=False)],
    directory: DirOption = None,
    algorithm: AlgorithmOption = "ec",
) -> None:
    """Emite un certificado de firma nuevo (con clave nueva) para una entidad del registro."""
    entity = _entities().get(entity_id)
    if entity is None:
        fail("GEL-PKI-UNKNOWN_ENTITY", f"la entidad {entity_id} no está en el registro de entidades",
             "agréguela a deploy/entities.yaml")
    try:
        row = _pki(directory).issue(entity, algorithm=_algorithm(algorithm))
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    console.print(f"Emitido el certificado {row.serial} para {row.entity}, válido hasta {row.not_after[:10]}.")


@app.command("revoke")
def revoke(
    entity_id: Annotated[str, typer.Argument(help="Entidad cuyos certificados se revocan.", show_default=False)],
    directory: DirOption = None,
) -> None:
    """Revoca los certificados vigentes de una entidad y publica una CRL nueva."""
    pki = _pki(directory)
    try:
        rows = pki.revoke(entity_id)
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    console.print(f"Revocados {len(rows)} certificados de {entity_id}; CRL actualizada en {pki.crl_path}.")
    console.print(f"Emita uno nuevo con: gel certs issue {entity_id}")


@app.command("import")
def import_certificate(
    entity_id: Annotated[str, typer.Argument(help="Entidad del registro, p. ej. CO/PLAT/900000001.",
                                             show_default=False)],
    certificate: Annotated[Path, typer.Option(
        "--certificado", exists=True, dir_okay=False,
        help="Certificado de firma (PEM) que emitió la entidad de certificación.")],
    key: Annotated[Path, typer.Option("--clave", exists=True, dir_okay=False,
                                      help="Su clave privada (PEM sin contraseña); se guarda con permisos 0600.")],
    directory: DirOption = None,
) -> None:
    """Agrega a la carpeta de la PKI un certificado emitido por una entidad de certificación real (sin su clave
    raíz: basta root-ca.pem con las anclas de confianza). Es lo que usan la pasarela, el orquestador y los
    adaptadores en producción en lugar de gel certs issue."""
    entity = _entities().get(entity_id)
    if entity is None:
        fail("GEL-PKI-UNKNOWN_ENTITY", f"la entidad {entity_id} no está en el registro de entidades",
             "agréguela a deploy/entities.yaml")
    try:
        row = _pki(directory).import_credential(entity, certificate.read_bytes(), key.read_bytes())
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    console.print(f"Importado el certificado {row.serial} de {row.entity}, válido hasta {row.not_after[:10]}.")


@app.command("list")
def list_certificates(
    directory: DirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Salida en JSON.")] = False,
) -> None:
    """Lista los certificados emitidos, vigentes y revocados."""
    pki = _pki(directory)
    if not pki.initialised:
        fail("GEL-PKI-NOT_INITIALISED", f"no hay PKI en {pki.directory}", "ejecute gel certs init")
    rows = pki.list()
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    console.print(_table(rows))
