"""``torch.futures``: ``Future``, the result of an asynchronous operation.

DDP communication hooks return one (``dist.all_reduce(t, async_op=True).get_future()``, or a
``Future`` completed by hand with ``set_result``), and chain work with ``then``.  As in PyTorch:

* ``wait()`` blocks until the value is there and returns it (raising what the operation raised);
* ``then(callback)`` returns a new Future holding ``callback(this_future)``; an exception the
  callback raises becomes a ``RuntimeError`` naming it, raised by the new Future's ``wait()``;
* a collective's Future holds the list of tensors the collective wrote (``fut.value()[0]``).

A Future made by a collective completes when the collective's ``Work`` does; its callbacks run
when that is seen — in ``wait()``/``done()`` on it or on a Future chained to it — in the calling
thread (PyTorch may run them on another thread; code that waits cannot tell).  A Future
completed with ``set_result``/``set_exception`` runs the callbacks chained to it at once.
"""
from __future__ import annotations

import threading

__all__ = ["Future", "collect_all", "wait_all"]

_PENDING = object()


class Future:
    """A value that will be there later (see the module docstring). ``devices`` is accepted and ignored."""

    def __class_getitem__(cls, item):   # ``Future[Tensor]`` in annotations, as torch.futures.Future[T]
        return cls

    def __init__(self, *, devices=None):
        self._value, self._error = _PENDING, None
        self._lock = threading.Lock()
        self._children = []     # (Future, callback) pairs: then() and add_done_callback()
        self._parents = ()      # the Futures this one waits for (then(), collect_all())
        self._source = None     # (wait, ready, value): how to finish the operation behind this Future

    @classmethod
    def _of_work(cls, work):
        """The Future of a collective's Work: its value is the list of tensors the Work wrote."""
        fut = cls()
        fut._source = (work.wait, work.is_completed, lambda: list(work._result or []))
        return fut

    # -------------------------------------------------------------- state
    def _complete(self) -> bool:
        return self._value is not _PENDING or self._error is not None

    def _settle(self, value=_PENDING, error=None):
        with self._lock:
            if self._complete():
                raise RuntimeError("Future: set_result/set_exception called on a Future that is already "
                                   "complete; a Future can only be marked completed once (make a new one)")
            self._value, self._error = (None, error) if error is not None else (value, None)
            children, self._children = self._children, []
        for child, callback in children:
            child._run(self, callback)

    def _run(self, parent, callback):
        try:
            value = callback(parent)
        except Exception as e:  # noqa: BLE001 - PyTorch puts the callback's exception in the new Future
            error = RuntimeError(f"Got the following error when running the callback: {type(e).__name__}: {e}")
            error.__cause__ = e   # (PyTorch's wording; the original is kept as the cause)
            self._settle(error=error)
            return
        self._settle(value)

    def _drive(self, block):
        """Finish the operation behind this Future if it can (``block``: wait for it)."""
        if self._complete() or self._source is None:
            return
        wait, ready, value = self._source
        if not block and not ready():
            return
        try:
            wait()
        except Exception as e:  # noqa: BLE001
            self._source = None
            self._settle(error=e)
            return
        self._source = None
        self._settle(value())

    def done(self) -> bool:
        """Whether the value (or an error) is there."""
        self._drive(False)
        for parent in self._parents:
            parent._drive(False)
        return self._complete()

    def wait(self):
        """Block until the value is there, and return it (raise the operation's error, if it failed)."""
        for parent in self._parents:
            if parent._error is None:   # (a failed parent's error reaches this Future through its callback)
                parent.wait()
        self._drive(True)
        if self._error is not None:
            raise self._error
        if self._value is _PENDING:
            raise RuntimeError("Future.wait: nothing will complete this Future (it was made with Future() and "
                               "set_result was never called)")
        return self._value

    def value(self):
        """The value of a completed Future (raise its error); call after ``wait()`` or in a callback."""
        if not self.done():
            raise RuntimeError("Future.value: the Future is not complete yet; call wait() first")
        if self._error is not None:
            raise self._error
        return self._value

    def set_result(self, result):
        """Complete the Future with ``result``; the callbacks chained to it run now."""
        self._settle(result)

    def set_exception(self, result):
        """Complete the Future with the exception ``result`` (``wait()`` raises it)."""
        if not isinstance(result, BaseException):
            raise TypeError(f"Future.set_exception: expected an exception, got {type(result).__name__}")
        self._settle(error=result)

    # ---------------------------------------------------------- chaining
    def then(self, callback):
        """A new Future holding ``callback(self)`` once this one is complete."""
        child = Future()
        child._parents = (self,)
        self._chain(child, callback)
        return child

    def add_done_callback(self, callback):
        """Call ``callback(self)`` once this Future is complete (its result is dropped)."""
        self._chain(_DISCARD, callback)

    def _chain(self, child, callback):
        with self._lock:
            complete = self._complete()
            if not complete:
                self._children.append((child, callback))
        if complete:
            child._run(self, callback)

    def __repr__(self):
        state = "pending" if not self.done() else ("failed" if self._error is not None else "done")
        return f"<Future {state}>"


class _Discard(Future):
    """Where ``add_done_callback``'s results go: nowhere."""

    def _settle(self, value=_PENDING, error=None):
        pass


_DISCARD = _Discard()


def collect_all(futures):
    """A Future of the list of ``futures``, complete once all are (PyTorch's ``torch.futures.collect_all``)."""
    futures = list(futures)
    out = Future()
    out._parents = tuple(futures)
    out._source = (lambda: [f.wait() for f in futures], lambda: all(f.done() for f in futures), lambda: futures)
    return out


def wait_all(futures):
    """Wait for every Future and return their values (raising the first error)."""
    return [f.wait() for f in futures]
