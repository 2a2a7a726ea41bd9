"""The one gate every use of a shared model goes through.

A loaded model is shared by every browser session, and torch calls a module's hooks on every thread's pass through
it, whoever registered them. So a pass that adds hooks or flips a flag (attention capture turns fused attention off,
DeepLIFT turns in-place activations off) must run alone, and a plain pass (a prediction, a scan's batch) must never
run while one does: it would fire the other's hooks, feed them its tensors and be ended by their exceptions.

The rule, as a readers-writer lock:

- :meth:`ModelGate.shared`: plain passes that leave the model as they found it. Any number at once.
- :meth:`ModelGate.exclusive`: anything that hooks the model or changes a flag on it, and every attribution method
  (which also keeps its memory within the process budget: one method's batches at a time). Alone.

Requests are served first come, first served, so a stream of predictions cannot starve an attribution, nor the
other way round. Both are re-entrant in the thread that holds them; a thread holding ``shared`` that asks for
``exclusive`` gets an error (two such threads would wait for each other for ever): take ``exclusive`` first.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator


class GateMisuse(RuntimeError):
    """The gate was used in a way that would deadlock or bypass it: a bug in the caller."""


class _Entries:
    """How many passes have entered any model's gate (outermost entries, shared or exclusive): in all, and by each
    thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all = 0
        self._mine = threading.local()

    def count(self) -> None:
        with self._lock:
            self._all += 1
        self._mine.n = getattr(self._mine, "n", 0) + 1

    def by_other_threads(self) -> int:
        with self._lock:
            return self._all - getattr(self._mine, "n", 0)


_ENTRIES = _Entries()


def passes_by_other_threads() -> int:
    """How many passes through any model's gate other threads have begun since the process started: unchanged
    between two readings of a thread when no other thread ran a model (a prediction, a scan's batch, an attribution)
    in between."""
    return _ENTRIES.by_other_threads()


class ModelGate:
    """A fair, re-entrant readers-writer lock for one model. See the module's docstring for the rule."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[object] = deque()
        self._readers = 0
        self._writer: int | None = None
        self._local = threading.local()

    def _depths(self) -> tuple[int, int]:
        return getattr(self._local, "shared", 0), getattr(self._local, "exclusive", 0)

    def held(self) -> bool:
        """Whether the calling thread is inside :meth:`shared` or :meth:`exclusive`."""
        shared, exclusive = self._depths()
        return shared > 0 or exclusive > 0

    def held_exclusive(self) -> bool:
        """Whether the calling thread is inside :meth:`exclusive`."""
        return self._depths()[1] > 0

    def exclusive_depth(self) -> int:
        """How many :meth:`exclusive` blocks the calling thread is inside (0 when none)."""
        return self._depths()[1]

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the gate for a plain pass: alongside other plain passes, never beside an exclusive one."""
        shared, exclusive = self._depths()
        if shared or exclusive:  # re-entry: this thread already keeps every exclusive user out
            with self._deeper("shared"):
                yield
            return
        self._enter(lambda: self._writer is None, writer=False)
        self._local.shared = 1
        try:
            yield
        finally:
            self._local.shared = 0
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the gate alone: no other pass, plain or not, runs through the model until the block ends."""
        shared, exclusive = self._depths()
        if exclusive:
            with self._deeper("exclusive"):
                yield
            return
        if shared:
            raise GateMisuse(
                "a thread inside a shared pass asked for the model alone; take exclusive() first (two threads doing "
                "this would wait for each other for ever)."
            )
        self._enter(lambda: self._writer is None and self._readers == 0, writer=True)
        self._local.exclusive = 1
        try:
            yield
        finally:
            self._local.exclusive = 0
            with self._cond:
                self._writer = None
                self._cond.notify_all()

    @contextlib.contextmanager
    def _deeper(self, which: str) -> Iterator[None]:
        """One more level of ``which`` (``"shared"`` or ``"exclusive"``) held by this thread, for the block."""
        setattr(self._local, which, getattr(self._local, which, 0) + 1)
        try:
            yield
        finally:
            setattr(self._local, which, getattr(self._local, which) - 1)

    def _enter(self, free, writer: bool) -> None:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                self._cond.wait_for(lambda: self._queue[0] is ticket and free())
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            if writer:
                self._writer = threading.get_ident()
            else:
                self._readers += 1
            self._cond.notify_all()  # the next in line may be a reader that can come in too
        _ENTRIES.count()
