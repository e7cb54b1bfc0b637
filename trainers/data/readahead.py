"""Run a producer generator in one background thread, at most `depth` items ahead of the consumer.

depth 0 runs it inline in the consumer's thread instead. Errors raised by the producer reach the consumer on its
next `get()`. No multiprocessing: trials are processes already.
"""
from __future__ import annotations

import queue
import threading
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")
_POLL_S = 0.1


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Inline(Generic[T]):
    def __init__(self, items: Iterator[T]) -> None:
        self._items = items

    def get(self) -> T:
        return next(self._items)

    def close(self) -> None:
        self._items.close()  # type: ignore[attr-defined]  # generators release their readers in `finally`


class Readahead(Generic[T]):
    def __init__(self, items: Iterator[T], depth: int) -> None:
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ganforge-data-readahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_Failure(RuntimeError("data producer ended; streams are endless")))
        except BaseException as exc:  # handed to the consumer, which re-raises it in its own thread
            self._put(_Failure(exc))
        finally:
            self._items.close()  # type: ignore[attr-defined]

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> T:
        if self._failure is not None:  # the thread is gone: keep reporting why
            raise self._failure
        item = self._queue.get()
        if isinstance(item, _Failure):
            self._failure = item.exc
            raise item.exc
        return item

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
