"""The entity registry: who is on the platform (deploy/entities.yaml)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["ENTITY_ID", "Entity", "EntityRegistry", "load_entities"]

ENTITY_ID = re.compile(r"^(?P<instance>[A-Z]{2})/(?P<cls>[A-Z]{2,8})/(?P<code>[0-9]{9})$")


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity: X-Road-shaped id (instance/class/NIT), name and role in the chains."""

    id: str
    name: str
    kind: str

    @property
    def entity_class(self) -> str:
        return self.id.split("/")[1]

    @property
    def nit(self) -> str:
        return self.id.split("/")[2]


@dataclass(frozen=True, slots=True)
class EntityRegistry:
    entities: tuple[Entity, ...]
    path: Path

    def get(self, entity_id: str) -> Entity | None:
        return next((e for e in self.entities if e.id == entity_id), None)

    def of_kind(self, kind: str) -> tuple[Entity, ...]:
        return tuple(e for e in self.entities if e.kind == kind)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.entities)

    def __len__(self) -> int:
        return len(self.entities)


def load_entities(path: Path) -> EntityRegistry:
    """Read the registry; a malformed or duplicate id is a configuration error named with its position."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entities: list[Entity] = []
    seen: set[str] = set()
    for index, item in enumerate(data.get("entities", []), start=1):
        entity_id = str(item.get("id", ""))
        if not ENTITY_ID.match(entity_id):
            raise ValueError(f"{path}: la entidad n.º {index} tiene un id no válido {entity_id!r} "
                             "(formato CO/<CLASE>/<NIT de 9 dígitos>)")
        if entity_id in seen:
            raise ValueError(f"{path}: la entidad {entity_id} aparece dos veces")
        seen.add(entity_id)
        entities.append(Entity(id=entity_id, name=str(item.get("name", entity_id)), kind=str(item.get("kind", ""))))
    return EntityRegistry(entities=tuple(entities), path=path)
