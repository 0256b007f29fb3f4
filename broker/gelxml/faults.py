"""Coded faults (`falla`): the one catalogue of every rejection the platform can give.

Every rejection anywhere in the platform is a `Falla`: a stable code, a Spanish description for the
person who must fix it, the pipeline stage, and where in the document the problem is. Stages raise
`GelFault` internally; boundaries (CLI, gateway, API) turn it into a value or a signed `falla` message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lxml import etree

from broker.gelxml.namespaces import FALLA, qname


class Stage(StrEnum):
    """Pipeline stage that detected a fault; the value is the Spanish name used in `falla/etapa`."""

    PARSE = "analisis"
    VALIDATE = "validacion"
    AUTHENTICATE = "autenticacion"
    AUTHORISE = "autorizacion"
    DEDUPLICATE = "duplicados"
    TIMESTAMP = "estampado"
    RECORD = "registro"
    ROUTE = "enrutamiento"
    ADAPTER = "adaptador"
    ORCHESTRATE = "orquestacion"


class FaultCode(StrEnum):
    """Stable fault codes, `GEL-<STAGE>-<REASON>`. Never renumber or reuse one."""

    PARSE_EMPTY = "GEL-PARSE-EMPTY"
    PARSE_TOO_LARGE = "GEL-PARSE-TOO_LARGE"
    PARSE_TOO_DEEP = "GEL-PARSE-TOO_DEEP"
    PARSE_ENCODING = "GEL-PARSE-ENCODING"
    PARSE_DTD = "GEL-PARSE-DTD"
    PARSE_XINCLUDE = "GEL-PARSE-XINCLUDE"
    PARSE_MALFORMED = "GEL-PARSE-MALFORMED"

    VALID_ROOT = "GEL-VALID-ROOT"
    VALID_SCHEMA = "GEL-VALID-SCHEMA"
    VALID_MISSING_ELEMENT = "GEL-VALID-MISSING_ELEMENT"
    VALID_UNEXPECTED_ELEMENT = "GEL-VALID-UNEXPECTED_ELEMENT"
    VALID_VALUE = "GEL-VALID-VALUE"
    VALID_PATTERN = "GEL-VALID-PATTERN"
    VALID_ENUMERATION = "GEL-VALID-ENUMERATION"
    VALID_LENGTH = "GEL-VALID-LENGTH"
    VALID_ATTRIBUTE = "GEL-VALID-ATTRIBUTE"
    VALID_UNKNOWN_PAYLOAD = "GEL-VALID-UNKNOWN_PAYLOAD"
    VALID_UNKNOWN_SERVICE = "GEL-VALID-UNKNOWN_SERVICE"
    VALID_SERVICE_MISMATCH = "GEL-VALID-SERVICE_MISMATCH"
    VALID_MISSING_CORRELATION = "GEL-VALID-MISSING_CORRELATION"
    VALID_MISSING_REQUEST_HASH = "GEL-VALID-MISSING_REQUEST_HASH"
    VALID_NIT_CHECK_DIGIT = "GEL-VALID-NIT_CHECK_DIGIT"

    IO_UNREADABLE = "GEL-IO-UNREADABLE"

    AUTH_UNSIGNED = "GEL-AUTH-UNSIGNED"
    AUTH_SIGNATURE_LOCATION = "GEL-AUTH-SIGNATURE_LOCATION"
    AUTH_BAD_SIGNATURE = "GEL-AUTH-BAD_SIGNATURE"
    AUTH_NO_CERTIFICATE = "GEL-AUTH-NO_CERTIFICATE"
    AUTH_UNTRUSTED = "GEL-AUTH-UNTRUSTED"
    AUTH_EXPIRED = "GEL-AUTH-EXPIRED"
    AUTH_NOT_YET_VALID = "GEL-AUTH-NOT_YET_VALID"
    AUTH_REVOKED = "GEL-AUTH-REVOKED"
    AUTH_KEY_USAGE = "GEL-AUTH-KEY_USAGE"
    AUTH_SENDER_MISMATCH = "GEL-AUTH-SENDER_MISMATCH"
    AUTH_RECEIPT_MISMATCH = "GEL-AUTH-RECEIPT_MISMATCH"
    AUTH_TRANSPORT_USER = "GEL-AUTH-TRANSPORT_USER"
    AUTHZ_UNKNOWN_SERVICE = "GEL-AUTHZ-UNKNOWN_SERVICE"
    AUTHZ_RETIRED = "GEL-AUTHZ-RETIRED"
    AUTHZ_DENIED = "GEL-AUTHZ-DENIED"
    AUTHZ_WRONG_PROVIDER = "GEL-AUTHZ-WRONG_PROVIDER"
    AUTHZ_UNSOLICITED_REPLY = "GEL-AUTHZ-UNSOLICITED_REPLY"
    AUTHZ_NO_SUBSCRIBERS = "GEL-AUTHZ-NO_SUBSCRIBERS"
    ROUTE_UNAVAILABLE = "GEL-ROUTE-UNAVAILABLE"
    MAP_REQUIRED = "GEL-MAP-REQUIRED"
    MAP_UNKNOWN_CODE = "GEL-MAP-UNKNOWN_CODE"
    MAP_BAD_DATE = "GEL-MAP-BAD_DATE"
    MAP_BAD_NUMBER = "GEL-MAP-BAD_NUMBER"
    MAP_UNKNOWN_MUNICIPALITY = "GEL-MAP-UNKNOWN_MUNICIPALITY"
    MAP_BAD_VALUE = "GEL-MAP-BAD_VALUE"
    ADAPTER_LEGACY_UNAVAILABLE = "GEL-ADAPTER-LEGACY_UNAVAILABLE"
    ADAPTER_LEGACY_TIMEOUT = "GEL-ADAPTER-LEGACY_TIMEOUT"
    ADAPTER_LEGACY_GARBAGE = "GEL-ADAPTER-LEGACY_GARBAGE"
    ADAPTER_NOT_FOUND = "GEL-ADAPTER-NOT_FOUND"
    ADAPTER_NO_HANDLER = "GEL-ADAPTER-NO_HANDLER"
    ADAPTER_HANDLER_FAILED = "GEL-ADAPTER-HANDLER_FAILED"
    ADAPTER_RECIPIENT_REFUSED = "GEL-ADAPTER-RECIPIENT_REFUSED"
    ADAPTER_MAIL_REJECTED = "GEL-ADAPTER-MAIL_REJECTED"
    ROUTE_REPLY_TIMEOUT = "GEL-ROUTE-REPLY_TIMEOUT"
    DUP_REPLAY = "GEL-DUP-REPLAY"
    DUP_STALE = "GEL-DUP-STALE"
    TS_INVALID = "GEL-TS-INVALID"
    TS_MISMATCH = "GEL-TS-MISMATCH"
    TS_UNTRUSTED = "GEL-TS-UNTRUSTED"
    LOG_ALTERED = "GEL-LOG-ALTERED"
    LOG_MISSING = "GEL-LOG-MISSING"
    LOG_REORDERED = "GEL-LOG-REORDERED"
    LOG_BAD_EVIDENCE = "GEL-LOG-BAD_EVIDENCE"
    LOG_NOT_FOUND = "GEL-LOG-NOT_FOUND"
    PKI_UNKNOWN_ENTITY = "GEL-PKI-UNKNOWN_ENTITY"
    PKI_NOT_INITIALISED = "GEL-PKI-NOT_INITIALISED"
    PKI_IMPORT = "GEL-PKI-IMPORT"
    CHAIN_UNKNOWN = "GEL-CHAIN-UNKNOWN"
    CHAIN_VERSION_CHANGED = "GEL-CHAIN-VERSION_CHANGED"
    CHAIN_INPUT_MISSING = "GEL-CHAIN-INPUT_MISSING"
    CHAIN_NOT_FOUND = "GEL-CHAIN-NOT_FOUND"
    CHAIN_START_FAILED = "GEL-CHAIN-START_FAILED"
    CHAIN_TASK_NOT_FOUND = "GEL-CHAIN-TASK_NOT_FOUND"
    CHAIN_TASK_FORBIDDEN = "GEL-CHAIN-TASK_FORBIDDEN"
    CHAIN_TASK_FIELDS = "GEL-CHAIN-TASK_FIELDS"
    CHAIN_TASK_CLOSED = "GEL-CHAIN-TASK_CLOSED"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    stage: Stage
    template: str
    retryable: bool = False


_CATALOGUE: dict[FaultCode, FaultSpec] = {
    FaultCode.PARSE_EMPTY: FaultSpec(Stage.PARSE, "El mensaje está vacío: envíe un documento GEL-XML."),
    FaultCode.PARSE_TOO_LARGE: FaultSpec(
        Stage.PARSE,
        "El mensaje pesa {size} bytes y el máximo permitido es {limit} bytes. Adjunte los documentos "
        "grandes por referencia (documentoAdjunto) en lugar de incluirlos en el mensaje.",
    ),
    FaultCode.PARSE_TOO_DEEP: FaultSpec(
        Stage.PARSE,
        "El documento anida elementos a más de {limit} niveles de profundidad; ningún esquema GEL-XML "
        "lo permite.",
    ),
    FaultCode.PARSE_ENCODING: FaultSpec(
        Stage.PARSE, "El mensaje debe estar codificado en UTF-8: {detail}."
    ),
    FaultCode.PARSE_DTD: FaultSpec(
        Stage.PARSE,
        "El documento declara un DOCTYPE o entidades; por seguridad la plataforma no los acepta. "
        "Elimine la declaración <!DOCTYPE …>.",
    ),
    FaultCode.PARSE_XINCLUDE: FaultSpec(
        Stage.PARSE, "El documento usa XInclude; por seguridad la plataforma no incluye contenido externo."
    ),
    FaultCode.PARSE_MALFORMED: FaultSpec(Stage.PARSE, "El documento no es XML bien formado: {detail}."),
    FaultCode.VALID_ROOT: FaultSpec(
        Stage.VALIDATE,
        "El elemento raíz es {found}; todo mensaje de la plataforma debe ser un sobre GEL-XML "
        "<mensaje> del espacio de nombres {expected}.",
    ),
    FaultCode.VALID_SCHEMA: FaultSpec(Stage.VALIDATE, "El documento no cumple el esquema: {detail}."),
    FaultCode.VALID_MISSING_ELEMENT: FaultSpec(
        Stage.VALIDATE, "Falta un elemento obligatorio en {element}: se esperaba {expected}."
    ),
    FaultCode.VALID_UNEXPECTED_ELEMENT: FaultSpec(
        Stage.VALIDATE, "El elemento {element} no está permitido en esta posición{expected}."
    ),
    FaultCode.VALID_VALUE: FaultSpec(
        Stage.VALIDATE, "El valor {value} de {element} no es válido para el tipo {type}."
    ),
    FaultCode.VALID_PATTERN: FaultSpec(
        Stage.VALIDATE, "El valor {value} de {element} no tiene el formato exigido (patrón {pattern})."
    ),
    FaultCode.VALID_ENUMERATION: FaultSpec(
        Stage.VALIDATE, "El valor {value} de {element} no es uno de los permitidos: {allowed}."
    ),
    FaultCode.VALID_LENGTH: FaultSpec(
        Stage.VALIDATE, "El valor de {element} tiene una longitud no permitida: {detail}."
    ),
    FaultCode.VALID_ATTRIBUTE: FaultSpec(Stage.VALIDATE, "Atributo no válido en {element}: {detail}."),
    FaultCode.VALID_UNKNOWN_PAYLOAD: FaultSpec(
        Stage.VALIDATE,
        "El cuerpo contiene {element}, que no pertenece a ningún servicio registrado en el catálogo.",
    ),
    FaultCode.VALID_UNKNOWN_SERVICE: FaultSpec(
        Stage.VALIDATE,
        "El servicio {service} versión {version} no está registrado. Consulte el catálogo de servicios "
        "(gel schemas catalog) para ver los servicios y versiones disponibles.",
    ),
    FaultCode.VALID_SERVICE_MISMATCH: FaultSpec(
        Stage.VALIDATE,
        "El cuerpo contiene {found}, pero un mensaje de tipo {message_type} del servicio {service} "
        "versión {version} debe contener {expected}.",
    ),
    FaultCode.VALID_MISSING_CORRELATION: FaultSpec(
        Stage.VALIDATE,
        "Un mensaje de tipo {message_type} debe indicar en idCorrelacion el idMensaje al que responde.",
    ),
    FaultCode.VALID_MISSING_REQUEST_HASH: FaultSpec(
        Stage.VALIDATE,
        "Una respuesta debe incluir hashSolicitud, el resumen SHA-256 de la solicitud que responde.",
    ),
    FaultCode.VALID_NIT_CHECK_DIGIT: FaultSpec(
        Stage.VALIDATE,
        "El dígito de verificación {found} no corresponde al NIT {nit}; el correcto es {expected}.",
    ),
    FaultCode.IO_UNREADABLE: FaultSpec(Stage.PARSE, "No se pudo leer el archivo: {detail}."),

    FaultCode.AUTH_UNSIGNED: FaultSpec(
        Stage.AUTHENTICATE,
        "El mensaje no está firmado: toda entidad debe firmar sus mensajes (gel sign --entity ID ARCHIVO).",
    ),
    FaultCode.AUTH_SIGNATURE_LOCATION: FaultSpec(
        Stage.AUTHENTICATE,
        "La firma no está donde debe: {detail}. Se admite una sola ds:Signature, último hijo de mensaje, "
        "con una única referencia URI=\"\" al mensaje completo.",
    ),
    FaultCode.AUTH_BAD_SIGNATURE: FaultSpec(
        Stage.AUTHENTICATE,
        "La firma no corresponde al contenido: el mensaje fue alterado después de firmado ({detail}).",
    ),
    FaultCode.AUTH_NO_CERTIFICATE: FaultSpec(
        Stage.AUTHENTICATE,
        "La firma no trae el certificado del firmante en ds:KeyInfo/ds:X509Data ({detail}).",
    ),
    FaultCode.AUTH_UNTRUSTED: FaultSpec(
        Stage.AUTHENTICATE,
        "El certificado de {subject} no fue emitido por una autoridad de certificación de confianza de la "
        "plataforma.",
    ),
    FaultCode.AUTH_EXPIRED: FaultSpec(
        Stage.AUTHENTICATE, "El certificado de {subject} venció el {not_after}; solicite uno nuevo.",
    ),
    FaultCode.AUTH_NOT_YET_VALID: FaultSpec(
        Stage.AUTHENTICATE, "El certificado de {subject} solo es válido desde el {not_before}.",
    ),
    FaultCode.AUTH_REVOKED: FaultSpec(
        Stage.AUTHENTICATE,
        "El certificado de {subject} (serie {serial}) fue revocado el {revoked_at}; la entidad debe usar "
        "un certificado vigente.",
    ),
    FaultCode.AUTH_KEY_USAGE: FaultSpec(
        Stage.AUTHENTICATE,
        "El certificado de {subject} no está autorizado para firmar mensajes ({detail}).",
    ),
    FaultCode.AUTH_SENDER_MISMATCH: FaultSpec(
        Stage.AUTHENTICATE,
        "El mensaje dice venir de {claimed}, pero lo firmó el certificado de {signer}: una entidad solo "
        "puede firmar en su propio nombre.",
    ),
    FaultCode.AUTH_RECEIPT_MISMATCH: FaultSpec(
        Stage.AUTHENTICATE, "El acuse no corresponde al mensaje enviado: {detail}.",
    ),
    FaultCode.AUTH_TRANSPORT_USER: FaultSpec(
        Stage.AUTHENTICATE,
        "El mensaje llegó por la conexión de {transport_user}, pero dice venir de {claimed}: cada entidad "
        "publica solo con su propio usuario de RabbitMQ.",
    ),
    FaultCode.AUTHZ_UNKNOWN_SERVICE: FaultSpec(
        Stage.AUTHORISE,
        "El servicio {service} versión {version} no está publicado en el catálogo de servicios; "
        "consulte gel catalog o pida su publicación al proveedor.",
    ),
    FaultCode.AUTHZ_RETIRED: FaultSpec(
        Stage.AUTHORISE,
        "La versión {version} del servicio {service} fue retirada; use una versión activa: {active}.",
    ),
    FaultCode.AUTHZ_DENIED: FaultSpec(
        Stage.AUTHORISE,
        "La entidad {caller} no está autorizada para invocar {service} versión {version}; el proveedor "
        "debe concederle acceso en el catálogo.",
    ),
    FaultCode.AUTHZ_WRONG_PROVIDER: FaultSpec(
        Stage.AUTHORISE,
        "La entidad {recipient} no presta el servicio {service} versión {version}; lo prestan: {providers}.",
    ),
    FaultCode.AUTHZ_UNSOLICITED_REPLY: FaultSpec(
        Stage.AUTHORISE,
        "Este {message_type} responde al mensaje {correlation}, pero la plataforma no enrutó ninguna "
        "solicitud con ese idMensaje de {recipient} a {sender}.",
    ),
    FaultCode.AUTHZ_NO_SUBSCRIBERS: FaultSpec(
        Stage.AUTHORISE,
        "El evento {service} versión {version} se publicó a la plataforma, pero el catálogo no le registra "
        "suscriptores; publíquelo a una entidad concreta o pida al proveedor registrar los suscriptores.",
    ),
    FaultCode.MAP_REQUIRED: FaultSpec(
        Stage.ADAPTER,
        "Falta el dato obligatorio {field} ({side}); el mapeo {mapping} lo exige. Complételo en el sistema de "
        "origen o declare un valor por defecto en el mapeo.",
    ),
    FaultCode.MAP_UNKNOWN_CODE: FaultSpec(
        Stage.ADAPTER,
        "El valor {value!r} de {field} no está en la tabla de códigos del mapeo {mapping} (conocidos: {known}).",
    ),
    FaultCode.MAP_BAD_DATE: FaultSpec(
        Stage.ADAPTER,
        "El valor {value!r} de {field} no es una fecha con el formato {format} que declara el mapeo {mapping}.",
    ),
    FaultCode.MAP_BAD_NUMBER: FaultSpec(
        Stage.ADAPTER,
        "El valor {value!r} de {field} no es un número con el formato que declara el mapeo {mapping}.",
    ),
    FaultCode.MAP_UNKNOWN_MUNICIPALITY: FaultSpec(
        Stage.ADAPTER,
        "El municipio {value!r} de {field} no aparece en la tabla DANE (DIVIPOLA); revise la ortografía o use "
        "el código de 5 dígitos.",
    ),
    FaultCode.MAP_BAD_VALUE: FaultSpec(
        Stage.ADAPTER,
        "El valor {value!r} de {field} no se puede convertir según el mapeo {mapping}: {detail}.",
    ),
    FaultCode.ADAPTER_LEGACY_UNAVAILABLE: FaultSpec(
        Stage.ADAPTER,
        "El sistema de {entity} no está disponible ({detail}); la solicitud se reintentará.",
        retryable=True,
    ),
    FaultCode.ADAPTER_LEGACY_TIMEOUT: FaultSpec(
        Stage.ADAPTER,
        "El sistema de {entity} no respondió en {seconds} segundos; la solicitud se reintentará.",
        retryable=True,
    ),
    FaultCode.ADAPTER_LEGACY_GARBAGE: FaultSpec(
        Stage.ADAPTER,
        "El sistema de {entity} devolvió una respuesta ilegible ({detail}); avise a su equipo de tecnología.",
    ),
    FaultCode.ADAPTER_NOT_FOUND: FaultSpec(
        Stage.ADAPTER,
        "El sistema de {entity} no tiene registro para {what}.",
    ),
    FaultCode.ADAPTER_NO_HANDLER: FaultSpec(
        Stage.ADAPTER,
        "La entidad {entity} no atiende el servicio {service} versión {version} en este adaptador.",
    ),
    FaultCode.ADAPTER_HANDLER_FAILED: FaultSpec(
        Stage.ADAPTER,
        "El adaptador de {entity} no pudo atender la solicitud ({detail}); avise a su equipo de tecnología.",
    ),
    FaultCode.ADAPTER_RECIPIENT_REFUSED: FaultSpec(
        Stage.ADAPTER,
        "El servidor de correo rechazó al destinatario {recipient} ({smtp_code} {reply}); verifique el correo "
        "electrónico que autorizó el ciudadano.",
    ),
    FaultCode.ADAPTER_MAIL_REJECTED: FaultSpec(
        Stage.ADAPTER,
        "El servidor de correo rechazó el mensaje para {recipient} ({smtp_code} {reply}); avise al equipo de la "
        "plataforma.",
    ),
    FaultCode.ROUTE_UNAVAILABLE: FaultSpec(
        Stage.ROUTE,
        "No se pudo entregar el mensaje a la cola de {recipient}: {detail}. Se reintentará.",
        retryable=True,
    ),
    FaultCode.ROUTE_REPLY_TIMEOUT: FaultSpec(
        Stage.ROUTE,
        "La entidad {recipient} no respondió la solicitud {message_id} en {seconds} segundos.",
        retryable=True,
    ),
    FaultCode.DUP_REPLAY: FaultSpec(
        Stage.DEDUPLICATE,
        "El mensaje {message_id} ya fue recibido; un reenvío debe llevar un idMensaje nuevo.",
    ),
    FaultCode.DUP_STALE: FaultSpec(
        Stage.DEDUPLICATE,
        "La fechaHoraEnvio {sent} está fuera de la ventana admitida de {window} segundos respecto de la "
        "hora de la plataforma ({now}); revise el reloj del sistema emisor.",
    ),
    FaultCode.TS_INVALID: FaultSpec(Stage.TIMESTAMP, "El sello de tiempo no es válido: {detail}."),
    FaultCode.TS_MISMATCH: FaultSpec(
        Stage.TIMESTAMP, "El sello de tiempo no corresponde a este contenido: {detail}.",
    ),
    FaultCode.TS_UNTRUSTED: FaultSpec(
        Stage.TIMESTAMP, "El sello de tiempo no lo emitió una autoridad de estampado de confianza: {detail}.",
    ),
    FaultCode.LOG_ALTERED: FaultSpec(
        Stage.RECORD, "El registro {record} del log de mensajes fue alterado: {detail}.",
    ),
    FaultCode.LOG_MISSING: FaultSpec(
        Stage.RECORD, "Faltan registros en el log de mensajes (posición {record}): {detail}.",
    ),
    FaultCode.LOG_REORDERED: FaultSpec(
        Stage.RECORD, "El registro {record} del log de mensajes está fuera de orden: {detail}.",
    ),
    FaultCode.LOG_BAD_EVIDENCE: FaultSpec(
        Stage.RECORD, "La evidencia del registro {record} no verifica: {detail}.",
    ),
    FaultCode.LOG_NOT_FOUND: FaultSpec(Stage.RECORD, "No hay ningún registro {record} en el log de mensajes."),
    FaultCode.PKI_UNKNOWN_ENTITY: FaultSpec(
        Stage.AUTHENTICATE,
        "La entidad {entity} no está en el registro de entidades ({path}) o no tiene certificado; "
        "agréguela y ejecute gel certs issue {entity}.",
    ),
    FaultCode.PKI_NOT_INITIALISED: FaultSpec(
        Stage.AUTHENTICATE,
        "No hay PKI en {path}: ejecute primero gel certs init.",
    ),
    FaultCode.PKI_IMPORT: FaultSpec(
        Stage.AUTHENTICATE,
        "No se importó el certificado de {entity}: {reason}. Importe el certificado de firma que la entidad de "
        "certificación emitió para esa entidad, con su clave privada (PEM sin contraseña).",
    ),
    FaultCode.CHAIN_UNKNOWN: FaultSpec(
        Stage.ORCHESTRATE, "No existe la cadena {chain}{version} en {folder}; las disponibles son: {available}.",
    ),
    FaultCode.CHAIN_VERSION_CHANGED: FaultSpec(
        Stage.ORCHESTRATE,
        "La definición de la cadena {chain} versión {version} cambió sin cambiar de versión ({source}); las "
        "instancias ya iniciadas la usan tal como era. Suba el número de version y vuelva a intentarlo.",
    ),
    FaultCode.CHAIN_INPUT_MISSING: FaultSpec(
        Stage.ORCHESTRATE, "Para iniciar la cadena {chain} faltan los datos: {fields}.",
    ),
    FaultCode.CHAIN_NOT_FOUND: FaultSpec(
        Stage.ORCHESTRATE, "No hay ninguna instancia de cadena con id o radicado {key}.",
    ),
    FaultCode.CHAIN_START_FAILED: FaultSpec(
        Stage.ORCHESTRATE, "La cadena {chain} no se pudo iniciar: {detail}.",
    ),
    FaultCode.CHAIN_TASK_NOT_FOUND: FaultSpec(Stage.ORCHESTRATE, "No hay ninguna tarea n.º {task}."),
    FaultCode.CHAIN_TASK_FORBIDDEN: FaultSpec(
        Stage.ORCHESTRATE,
        "La tarea n.º {task} ({title}) corresponde a {entity}; un funcionario de {by} no puede completarla.",
    ),
    FaultCode.CHAIN_TASK_FIELDS: FaultSpec(
        Stage.ORCHESTRATE, "Para completar la tarea n.º {task} ({title}) faltan los campos: {fields}.",
    ),
    FaultCode.CHAIN_TASK_CLOSED: FaultSpec(
        Stage.ORCHESTRATE, "La tarea n.º {task} ya está {status}; no se puede completar de nuevo.",
    ),
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a document a problem is: 1-based line and column, and an XPath."""

    line: int | None = None
    column: int | None = None
    xpath: str | None = None


def source_line(element: etree._Element | None) -> int | None:
    """The element's line in its document, if lxml knows it (lxml-stubs type `sourceline` loosely)."""
    line = element.sourceline if element is not None else None
    return line if isinstance(line, int) else None


def default_namespace(uri: str) -> Any:
    """An `nsmap` making `uri` the default namespace (the `None` key lxml-stubs does not admit)."""
    return {None: uri}


@dataclass(frozen=True, slots=True)
class Falla:
    """A coded fault: what was wrong, where, at which stage, and whether retrying can help."""

    code: FaultCode | str
    message: str
    stage: Stage
    location: Location | None = None
    retryable: bool = False
    problems: tuple[Falla, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "codigo": str(self.code),
            "descripcion": self.message,
            "etapa": self.stage.value,
            "reintentable": self.retryable,
        }
        if self.location is not None:
            data["linea"] = self.location.line
            data["columna"] = self.location.column
            data["rutaXPath"] = self.location.xpath
        if self.problems:
            data["problemas"] = [p.to_dict() for p in self.problems]
        return data

    def to_xml(self) -> etree._Element:
        """The `falla` payload element (Plataforma/Falla), ready to go in a message `cuerpo`."""
        root = etree.Element(qname(FALLA, "falla"), nsmap=default_namespace(FALLA))
        _append_core(root, self)
        etree.SubElement(root, qname(FALLA, "etapa")).text = self.stage.value
        _append_location(root, self.location)
        etree.SubElement(root, qname(FALLA, "reintentable")).text = "true" if self.retryable else "false"
        for problem in self.problems[:50]:
            node = etree.SubElement(root, qname(FALLA, "problema"))
            _append_core(node, problem)
            _append_location(node, problem.location)
        return root

    def all(self) -> tuple[Falla, ...]:
        """This fault followed by every additional problem."""
        return (self, *self.problems)


def _append_core(parent: etree._Element, falla: Falla) -> None:
    etree.SubElement(parent, qname(FALLA, "codFalla")).text = str(falla.code)
    etree.SubElement(parent, qname(FALLA, "descripcion")).text = falla.message


def _append_location(parent: etree._Element, location: Location | None) -> None:
    if location is None or (location.line is None and location.xpath is None):
        return
    node = etree.SubElement(parent, qname(FALLA, "ubicacion"))
    if location.line is not None:
        etree.SubElement(node, qname(FALLA, "linea")).text = str(location.line)
    if location.column is not None:
        etree.SubElement(node, qname(FALLA, "columna")).text = str(location.column)
    if location.xpath is not None:
        etree.SubElement(node, qname(FALLA, "rutaXPath")).text = location.xpath


class GelFault(Exception):
    """Raised inside a stage; carries the `Falla` the boundary reports."""

    def __init__(self, falla: Falla) -> None:
        super().__init__(f"{falla.code}: {falla.message}")
        self.falla = falla


def spec(code: FaultCode) -> FaultSpec:
    return _CATALOGUE[code]


def falla(
    code: FaultCode,
    *,
    location: Location | None = None,
    problems: tuple[Falla, ...] = (),
    **params: object,
) -> Falla:
    """Build the `Falla` for `code`, filling its Spanish template with `params`."""
    fault_spec = _CATALOGUE[code]
    return Falla(
        code=code,
        message=fault_spec.template.format(**params),
        stage=fault_spec.stage,
        location=location,
        retryable=fault_spec.retryable,
        problems=problems,
    )


def fault(code: FaultCode, *, location: Location | None = None, problems: tuple[Falla, ...] = (),
          **params: object) -> GelFault:
    """The exception to raise for `code`: `raise fault(FaultCode.PARSE_EMPTY)`."""
    return GelFault(falla(code, location=location, problems=problems, **params))


def catalogue() -> dict[FaultCode, FaultSpec]:
    """Every fault code with its stage and template (for documentation and tests)."""
    return dict(_CATALOGUE)
