"""What both transports' consumers share: the thread on which a handler runs (deliveries in order, one at a
time) and the reading of `consume`'s queue argument."""

from __future__ import annotations

import queue as queue_mod
import threading
from collections.abc import Callable, Sequence
from typing import Any

from broker.transport.abc import Delivery

__all__ = ["HandlerThread", "consumer_label", "queue_names"]


def queue_names(queue: str | Sequence[str]) -> tuple[str, ...]:
    """One queue or several, each once, in the given order."""
    names = (queue,) if isinstance(queue, str) else tuple(dict.fromkeys(queue))
    if not names:
        raise ValueError("consume necesita al menos una cola")
    return names


def consumer_label(queues: Sequence[str]) -> str:
    """How logs and thread names call a consumer: its queue, or its first queue and how many more."""
    return queues[0] if len(queues) == 1 else f"{queues[0]}+{len(queues) - 1}"


class HandlerThread:
    """Calls `handler` for each submitted delivery still `current` (its channel or consumer alive); a handler
    that raises is logged and its delivery handed to `requeue`, so a bug never loses a message."""

    def __init__(self, queue: str, handler: Callable[[Delivery], None], *, current: Callable[[Delivery], bool],
                 requeue: Callable[[Delivery], None], log: Any) -> None:
        self._handler = handler
        self._current = current
        self._requeue = requeue
        self._log = log.bind(cola=queue)
        self._inbox: queue_mod.SimpleQueue[Delivery | None] = queue_mod.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=f"gel-consumer-{queue}", daemon=True)
        self._thread.start()

    def submit(self, delivery: Delivery) -> None:
        self._inbox.put(delivery)

    def stop(self, timeout: float = 10.0) -> None:
        self._inbox.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _work(self) -> None:
        while (delivery := self._inbox.get()) is not None:
            if not self._current(delivery):
                continue
            try:
                self._handler(delivery)
            except Exception:
                self._log.exception("consumidor_fallo", delivery_tag=delivery.delivery_tag)
                self._requeue(delivery)
