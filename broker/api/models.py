"""What the API answers: frozen pydantic models with Spanish field descriptions (they are the OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from broker.api.errors import ErrorBody
from broker.catalog import ServiceStatus


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class CadenaResumen(_Model):
    id: str = Field(description="Identificador de la instancia (idCadena).")
    radicado: str = Field(description="Radicado del trámite.")
    cadena: str = Field(description="Nombre de la cadena de trámites.")
    version: int = Field(description="Versión de la definición de la cadena.")
    titulo: str = Field(description="Título de la cadena.")
    estado: str = Field(description="Estado: en_curso, compensando, completada, fallida.")
    resultado: str | None = Field(description="Resultado final, si terminó.")
    vencida: bool = Field(description="Verdadero si superó el plazo legal de respuesta.")
    responsables: list[str] = Field(description="Entidades que tienen el trámite en este momento.")
    fecha_limite: str | None = Field(description="Fecha límite del trámite (UTC, ISO-8601).")
    iniciada: str = Field(description="Fecha de inicio (UTC).")
    actualizada: str = Field(description="Fecha del último cambio (UTC).")
    terminada: str | None = Field(description="Fecha de terminación (UTC), si terminó.")


class EventoCadena(_Model):
    fecha: str = Field(description="Momento del evento (UTC).")
    tipo: str = Field(description="Tipo de evento (paso_iniciado, solicitud_enviada, respuesta_recibida, …).")
    paso: str | None = Field(description="Paso de la cadena al que se refiere.")
    detalle: dict[str, Any] = Field(description="Datos del evento (sin valores del contexto del trámite).")


class LlamadaPaso(_Model):
    paso: str = Field(description="Paso de la cadena que hizo la llamada.")
    servicio: str | None = Field(description="Servicio llamado.")
    entidad: str | None = Field(description="Entidad llamada.")
    id_mensaje_solicitud: str | None = Field(description="idMensaje de la solicitud.")
    id_mensaje_respuesta: str | None = Field(description="idMensaje de la respuesta, si llegó.")
    enviada: str = Field(description="Momento del envío de la solicitud (UTC).")
    respondida: str | None = Field(description="Momento de la respuesta o la falla (UTC).")
    duracion_ms: float | None = Field(description="Milisegundos entre la solicitud y la respuesta.")
    resultado: str = Field(description="respondida, falla o pendiente.")


class CadenaDetalle(CadenaResumen):
    resumen: str | None = Field(description="Resumen del resultado (solo para el rol operador).")
    contexto: dict[str, Any] | None = Field(description="Datos del trámite (solo para el rol operador).")
    historia: list[EventoCadena] = Field(description="Línea de tiempo de la instancia.")
    llamadas: list[LlamadaPaso] = Field(description="Llamadas a servicios de cada paso, con su duración.")


class Tarea(_Model):
    id: int = Field(description="Número de la tarea.")
    instancia: str = Field(description="idCadena de la instancia.")
    paso: str = Field(description="Paso de la cadena.")
    titulo: str = Field(description="Qué debe hacer el funcionario.")
    entidad: str = Field(description="Entidad responsable de la tarea.")
    campos: list[str] = Field(description="Campos que la tarea debe diligenciar.")
    estado: str = Field(description="Estado de la tarea.")
    creada: str = Field(description="Fecha de creación (UTC).")
    vence: str | None = Field(description="Fecha de vencimiento (UTC).")


class Salto(_Model):
    id_mensaje: str = Field(description="idMensaje.")
    salto: str = Field(description="Tramo del recorrido del mensaje por la plataforma.")
    remitente: str = Field(description="Entidad de origen.")
    destinatario: str = Field(description="Entidad de destino.")
    servicio: str = Field(description="Servicio.")
    recibido: str = Field(description="Momento de recepción en la plataforma (UTC).")
    completado: str = Field(description="Momento en que terminó el tramo (UTC).")
    duracion_ms: float = Field(description="Duración del tramo en milisegundos.")
    tamano_bytes: int = Field(description="Tamaño del mensaje en bytes.")
    resultado: str = Field(description="entregado, reenviado, rechazado o sin_respuesta.")
    codigo_falla: str | None = Field(description="Código de la falla, si la hubo.")
    intento: int = Field(description="Número de entrega del mensaje.")


class PaginaMensajes(_Model):
    total: int = Field(description="Tramos que cumplen el filtro.")
    desplazamiento: int = Field(description="Tramos omitidos antes de esta página.")
    limite: int = Field(description="Tamaño máximo de la página.")
    mensajes: list[Salto] = Field(description="Tramos de esta página, del más reciente al más antiguo.")


class RegistroLog(_Model):
    numero: int = Field(description="Número de registro en el log encadenado.")
    fecha: str = Field(description="Momento del registro (UTC).")
    remitente: str = Field(description="Entidad de origen.")
    destinatario: str = Field(description="Entidad de destino.")
    servicio: str = Field(description="Servicio.")
    tipo_mensaje: str = Field(description="Tipo de mensaje (solicitud, respuesta, evento, falla).")
    resultado: str = Field(description="aceptado o rechazado por la plataforma.")
    codigo_falla: str | None = Field(description="Código de la falla, si fue rechazado.")
    resumen_sha256: str = Field(description="SHA-256 de los bytes del mensaje.")
    tamano_bytes: int = Field(description="Tamaño del mensaje en bytes.")


class MensajeDetalle(_Model):
    id_mensaje: str = Field(description="idMensaje.")
    id_cadena: str | None = Field(description="Instancia de cadena a la que pertenece, si se conoce.")
    registros: list[RegistroLog] = Field(description="Registros del mensaje en el log encadenado.")
    saltos: list[Salto] = Field(description="Registros operacionales del mensaje.")
    cuerpo_visible: bool = Field(description="Verdadero si quien consulta puede ver el contenido.")
    cuerpo: str | None = Field(description="El mensaje GEL-XML tal como se recibió (solo para sus partes).")


class SaludServicio(_Model):
    servicio: str = Field(description="Servicio.")
    ultimo_exito: str | None = Field(description="Último tramo entregado (UTC).")
    ultima_falla: str | None = Field(description="Último tramo rechazado o sin respuesta (UTC).")
    conteos: dict[str, int] = Field(description="Tramos por resultado en la ventana.")
    duracion_p50_ms: float | None = Field(description="Mediana de la duración en milisegundos.")
    duracion_p95_ms: float | None = Field(description="Percentil 95 de la duración en milisegundos.")
    duracion_max_ms: float | None = Field(description="Duración máxima en milisegundos.")


class ActividadEntidad(_Model):
    entidad: str = Field(description="Entidad.")
    nombre: str | None = Field(description="Nombre de la entidad.")
    ultima_actividad: str | None = Field(description="Último mensaje enviado o recibido (UTC).")


class Conexion(_Model):
    entidad: str = Field(description="Entidad (la pasarela, el orquestador o el adaptador de una entidad).")
    nombre: str | None = Field(description="Nombre de la entidad.")
    cola: str = Field(description="Cola de RabbitMQ que consume; para la pasarela, gel.entrada.*: la cola de "
                                  "entrada de cada entidad.")
    en_linea: bool = Field(description="Verdadero si hay al menos un consumidor conectado a su cola (la pasarela: "
                                       "a alguna de las colas de entrada; /metrics da los consumidores de cada una).")
    consumidores: int = Field(description="Consumidores conectados (la pasarela: los de la cola de entrada que más "
                                          "tiene, es decir, sus trabajadores).")
    mensajes_en_cola: int = Field(description="Mensajes esperando en su cola (la pasarela: en todas las colas de "
                                              "entrada).")


class Salud(_Model):
    desde: str = Field(description="Inicio de la ventana (UTC).")
    hasta: str = Field(description="Fin de la ventana (UTC).")
    servicios: list[SaludServicio] = Field(description="Salud de cada servicio en la ventana.")
    entidades: list[ActividadEntidad] = Field(description="Última actividad de cada entidad.")
    colas_leidas: bool = Field(description="Falso si RabbitMQ no se pudo consultar (o la plataforma usa el "
                                           "transporte embebido): entonces `conexiones` viene vacía.")
    conexiones: list[Conexion] = Field(description="Vivacidad de la pasarela y de los adaptadores: quién está "
                                                   "conectado a su cola y cuánto tiene pendiente.")


class HechoTramite(_Model):
    fecha: str = Field(description="Cuándo ocurrió (hora de Colombia, ISO-8601).")
    texto: str = Field(description="Qué ocurrió, en palabras sencillas.")


class Seguimiento(_Model):
    """Lo que el ciudadano puede saber de su propio trámite, y nada más."""

    radicado: str = Field(description="Radicado del trámite.")
    tramite: str = Field(description="Nombre del trámite.")
    estado: str = Field(description="Estado actual, en palabras sencillas: En trámite, En revisión por un "
                        "inconveniente, Finalizado o Finalizado sin poder completarse.")
    terminado: bool = Field(description="Verdadero si el trámite ya terminó.")
    resultado: str | None = Field(description="Resultado del trámite, cuando terminó.")
    radicado_el: str = Field(description="Fecha de radicación (hora de Colombia, ISO-8601).")
    terminado_el: str | None = Field(description="Fecha de terminación (hora de Colombia, ISO-8601), si terminó.")
    fecha_limite: str | None = Field(description="Fecha límite del plazo legal de respuesta (hora de Colombia, "
                                     "ISO-8601), si el trámite tiene plazo legal.")
    vencido: bool = Field(description="Verdadero si el trámite sigue en curso y ya pasó su fecha límite.")
    entidades_a_cargo: list[str] = Field(description="Entidades que tienen el trámite en este momento.")
    etapas: list[str] = Field(description="Etapas en curso del trámite.")
    hechos: list[HechoTramite] = Field(description="Lo que ha pasado con el trámite.")


class Vida(_Model):
    estado: str = Field(description="«ok» si la API está en funcionamiento.")


# -- the service catalog ---------------------------------------------------------------------------------
EntityId = Annotated[str, Field(description="Identificador de la entidad (p. ej. CO/GOB/899999007).", min_length=3,
                                max_length=64, pattern=r"^[A-Z]{2}/[A-Z]+/\d+$")]
class ServicioCatalogo(_Model):
    cod_servicio: str = Field(description="Código del servicio.")
    version: str = Field(description="Versión.")
    dominio: str = Field(description="Dominio GEL-XML (Vivienda, Registro, Salud, …).")
    espacio_nombres: str = Field(description="Espacio de nombres XML del servicio.")
    estado: str = Field(description="activo, obsoleto (sigue atendiendo; migre) o retirado (la pasarela lo rechaza).")
    entidad_propietaria: str = Field(description="Entidad dueña de la publicación.")
    descripcion: str = Field(description="Descripción del servicio.")
    proveedores: list[str] = Field(description="Entidades que atienden el servicio.")
    suscriptores: list[str] = Field(description="Entidades que reciben sus eventos.")
    consumidores: list[str] | None = Field(
        description="Entidades autorizadas a llamarlo (solo para el operador y la entidad propietaria).")
    plazo_respuesta_segundos: int | None = Field(description="Plazo del proveedor para responder.")
    muestras: list[str] = Field(description="Mensajes de ejemplo disponibles (solicitud, respuesta, evento).")
    origen: str = Field(description="archivo (esquema de la plataforma) o publicado (por la API o gel catalog).")
    publicado_el: str = Field(description="Fecha de publicación (UTC).")
    actualizado_el: str = Field(description="Fecha del último cambio (UTC).")


class Hallazgo(_Model):
    archivo: str = Field(description="Esquema o muestra donde está el problema.")
    linea: int | None = Field(description="Línea, si se conoce.")
    codigo: str = Field(description="Código del hallazgo (GEL-LINT-…, GEL-VALID-…).")
    severidad: str = Field(description="error o aviso.")
    descripcion: str = Field(description="Qué está mal y cómo corregirlo.")


class PublicacionRechazada(ErrorBody):
    hallazgos: list[Hallazgo] = Field(default_factory=list, description="Hallazgos que impiden la publicación "
                                      "(ausente si lo inválido es la solicitud misma).")


class Publicacion(_Model):
    esquema: str = Field(description="XSD del servicio (texto), con sus raíces entrada… y salida….",
                         min_length=1, max_length=2_000_000)
    entidad_propietaria: EntityId
    proveedores: list[EntityId] = Field(default_factory=list, max_length=50,
                                        description="Entidades que lo atienden (por defecto, la propietaria).")
    consumidores: list[EntityId] = Field(default_factory=list, max_length=500,
                                         description="Entidades autorizadas a llamarlo (por defecto, ninguna).")
    suscriptores: list[EntityId] = Field(default_factory=list, max_length=500,
                                         description="Entidades que reciben sus eventos.")
    plazo_respuesta_segundos: int | None = Field(default=None, ge=1, le=30 * 86400,
                                                 description="Plazo del proveedor para responder.")
    descripcion: str | None = Field(default=None, max_length=2000,
                                    description="Descripción (por defecto, la documentación del esquema).")
    muestras: dict[Literal["solicitud", "respuesta", "evento"], str] = Field(
        default_factory=dict, description="Mensajes de ejemplo completos (sobre GEL-XML sin firmar) por tipo.")


class ResultadoPublicacion(_Model):
    creado: bool = Field(description="Falso si la misma versión ya estaba publicada con el mismo esquema.")
    servicio: ServicioCatalogo
    avisos: list[Hallazgo] = Field(description="Hallazgos que no impiden publicar.")


class CambioEstado(_Model):
    estado: ServiceStatus = Field(description="activo, obsoleto o retirado (un servicio retirado no vuelve).")


class Acceso(_Model):
    entidad: EntityId


class CambioCatalogo(_Model):
    fecha: str = Field(description="Momento del cambio (UTC).")
    actor: str = Field(description="Quién lo hizo.")
    accion: str = Field(description="sembrado, publicado, estado, acceso_otorgado o acceso_revocado.")
    detalle: dict[str, Any] = Field(description="Datos del cambio.")
