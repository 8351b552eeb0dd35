"""A thin executor seam: run one function over many small items, locally or on Dask.

``get_executor("local", n)`` gives a process pool (``spawn`` context by default), ``n = 1`` runs
in-process and serially (deterministic, debuggable, no pickling); ``get_executor("dask", n)``
starts a Dask ``LocalCluster`` with ``n`` single-threaded workers, and with ``scheduler_address``
connects to an existing cluster instead (a dask-jobqueue ``SLURMCluster``'s ``scheduler_address``,
or ``dask scheduler`` + ``dask worker`` started by hand). The same pipeline code runs on both.

Contract for callers
--------------------
- ``fn`` must be importable by name in a fresh interpreter (a module-level function, or a
  :func:`functools.partial` of one): workers unpickle it by reference.
- Items must be **small and picklable**: file paths, gene ids, a few numbers. Never ship
  matrices or models; each task opens the files it needs (per-gene work = paths + gene id), so
  nothing large crosses process or machine boundaries.
- Results come back **as they finish, in any order** (:meth:`map_unordered`); write each to disk as
  it arrives so a killed run resumes from what is there. Results should also be small.
- A task that raises stops the map: outstanding tasks are cancelled and :class:`TaskError` is raised
  naming the item (``label(item)``; by default the gene id when the item is a gene id or a tuple
  ending in one); the original exception is its ``__cause__`` and its ``original`` attribute. When
  the original is an :class:`~expredict.errors.ExpredictError` (bad input), the error raised is a
  :class:`UserTaskError`, also an ``ExpredictError``, so the CLI reports it in one line.
- GPU work on Dask: pass ``resources={"GPU": 1}``; every task then needs a worker started with that
  resource (``dask worker ADDRESS --resources GPU=1``; a ``LocalCluster`` made here gets it on
  every worker). The local pool ignores ``resources``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Literal, Protocol, TypeVar

from expredict.errors import ConfigError, ExpredictError

__all__ = [
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "SerialExecutor",
    "TaskError",
    "UserTaskError",
    "default_label",
    "get_executor",
]

T = TypeVar("T")
R = TypeVar("R")
_log = logging.getLogger(__name__)


class TaskError(RuntimeError):
    """A task failed; the message names the item, ``original`` (also ``__cause__``) is the task's exception.

    Attributes
    ----------
    item : Any
        The item the failing task ran on.
    label : str
        Its printable name (the gene id for per-gene work).
    original : BaseException
        The exception raised inside the task (as re-raised on the client for remote backends).
    """

    def __init__(self, item: Any, label: str, original: BaseException) -> None:
        self.item = item
        self.label = label
        self.original = original
        super().__init__(f"task failed for {label}: {type(original).__name__}: {original}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.item, self.label, self.original))


class UserTaskError(TaskError, ExpredictError):
    """A task failed with an :class:`~expredict.errors.ExpredictError` (bad input, not a bug).

    Also an ``ExpredictError``, so the CLI prints its one-line message (which names the item) and
    exits non-zero without a traceback; the original error stays available as ``original``.
    """


def default_label(item: Any) -> str:
    """Printable name of an item: a string as is; for a tuple/list, its last string element
    (``(out_dir, gene_id)`` -> ``gene_id``); else ``repr`` (truncated to 120 characters)."""
    if isinstance(item, str):
        return item
    if isinstance(item, (tuple, list)):
        for x in reversed(item):
            if isinstance(x, str):
                return x
    text = repr(item)
    return text if len(text) <= 120 else text[:117] + "..."


class Executor(Protocol):
    """What the pipeline needs from a backend."""

    def map_unordered(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        label: Callable[[T], str] = default_label,
        with_items: bool = False,
    ) -> Iterator[Any]:
        """Yield ``fn(item)`` for every item as it finishes (or ``(item, result)`` with ``with_items``)."""
        ...

    def close(self) -> None:
        """Release workers (idempotent)."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


class _Base:
    n_workers: int

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def _fail(self, item: Any, label: Callable[[Any], str], exc: BaseException) -> TaskError:
        try:
            name = label(item)
        except Exception:  # a broken label must not hide the task's error
            name = default_label(item)
        if hasattr(exc, "add_note"):
            try:
                exc.add_note(f"(expredict task for {name})")
            except Exception:  # pragma: no cover - exotic exception classes
                pass
        cls = UserTaskError if isinstance(exc, ExpredictError) else TaskError
        return cls(item, name, exc)


class SerialExecutor(_Base):
    """Runs tasks in this process, one after another, in item order (``n_workers = 1``)."""

    n_workers = 1

    def map_unordered(self, fn, items, *, label=default_label, with_items=False):
        """Yield ``fn(item)`` in item order (see :meth:`Executor.map_unordered`)."""
        for item in items:
            try:
                result = fn(item)
            except Exception as exc:
                raise self._fail(item, label, exc) from exc
            yield (item, result) if with_items else result


class LocalExecutor(_Base):
    """A process pool of ``n_workers`` (``concurrent.futures.ProcessPoolExecutor``).

    At most ``max_in_flight`` tasks (default ``2 * n_workers``) are submitted at a time, so a long
    or lazy ``items`` iterable is consumed gradually and a failure cancels little work.
    """

    def __init__(self, n_workers: int, *, mp_context: str = "spawn", max_in_flight: int | None = None) -> None:
        self.n_workers = int(n_workers)
        self.max_in_flight = int(max_in_flight or 2 * self.n_workers)
        self._pool = ProcessPoolExecutor(max_workers=self.n_workers, mp_context=multiprocessing.get_context(mp_context))

    def map_unordered(self, fn, items, *, label=default_label, with_items=False):
        """Yield results as tasks finish (see :meth:`Executor.map_unordered`)."""
        it = iter(items)
        pending: dict[Future, Any] = {}
        try:
            for item in it:
                pending[self._pool.submit(fn, item)] = item
                if len(pending) >= self.max_in_flight:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = pending.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        raise self._fail(item, label, exc) from exc
                    yield (item, fut.result()) if with_items else fut.result()
                    for nxt in it:
                        pending[self._pool.submit(fn, nxt)] = nxt
                        if len(pending) >= self.max_in_flight:
                            break
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        """Shut the pool down, cancelling queued tasks."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(_Base):
    """Dask distributed: a new ``LocalCluster`` or a client of the cluster at ``scheduler_address``.

    Parameters
    ----------
    n_workers : int
        Workers of the ``LocalCluster`` (one thread each); ignored with ``scheduler_address``.
    scheduler_address : str, optional
        Address of a running scheduler (``tcp://host:8786``); the cluster is left running on close.
    resources : dict, optional
        Abstract resources every task needs (``{"GPU": 1}``), passed to ``client.submit``.
    processes : bool
        ``LocalCluster`` workers as processes (default) or threads (fast start; for tests).
    max_in_flight : int, optional
        Most tasks submitted at a time. Default: all at once (the scheduler balances them).
    cluster_kwargs : dict, optional
        Extra ``LocalCluster`` keyword arguments (``memory_limit``, ``local_directory``, ...).
    """

    def __init__(
        self,
        n_workers: int,
        scheduler_address: str | None = None,
        *,
        resources: dict[str, float] | None = None,
        processes: bool = True,
        max_in_flight: int | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
            msg = "the dask backend needs dask[distributed]: pip install 'dask[distributed]'"
            raise ImportError(msg) from exc
        self.n_workers = int(n_workers)
        self.resources = dict(resources) if resources else None
        self.max_in_flight = max_in_flight
        self._cluster = None
        if scheduler_address:
            self._client = Client(scheduler_address)
            self._check_resources()
        else:
            # ":0": a free port, so concurrent runs (and tests) never fight over 8787
            kw: dict[str, Any] = {"dashboard_address": ":0", **(cluster_kwargs or {})}
            if self.resources:
                kw.setdefault("resources", self.resources)
            self._cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=processes, **kw)
            self._client = Client(self._cluster)
        _log.info("Dask client %s (dashboard: %s)", self._client.scheduler.address, self._client.dashboard_link)

    @property
    def client(self):
        """The ``distributed.Client`` (for dashboards, ``client.scatter``-free introspection)."""
        return self._client

    def _check_resources(self) -> None:
        if not self.resources:
            return
        workers = self._client.scheduler_info().get("workers", {})
        have = [
            w for w in workers.values() if all(w.get("resources", {}).get(k, 0) >= v for k, v in self.resources.items())
        ]
        if not have:
            _log.warning(
                "no worker of the Dask cluster offers resources %s yet; tasks wait until one joins "
                "(start workers with `dask worker ADDRESS --resources GPU=1`)",
                self.resources,
            )

    def map_unordered(self, fn, items, *, label=default_label, with_items=False):
        """Yield results as tasks finish (see :meth:`Executor.map_unordered`)."""
        from distributed import as_completed

        name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "task")
        kw: dict[str, Any] = {"pure": False}
        if self.resources:
            kw["resources"] = self.resources

        def submit(item: Any):
            key = f"{name}-{_key_part(label, item)}-{uuid.uuid4().hex[:8]}"
            return self._client.submit(fn, item, key=key, **kw)

        it = iter(items)
        pending: dict[Any, Any] = {}
        limit = self.max_in_flight
        for item in it:
            pending[submit(item)] = item
            if limit and len(pending) >= limit:
                break
        ac = as_completed(list(pending))
        try:
            for fut in ac:
                item = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # the task's own exception, re-raised here by distributed
                    raise self._fail(item, label, exc) from exc
                fut.release()
                yield (item, result) if with_items else result
                if limit:
                    for nxt in it:
                        new = submit(nxt)
                        pending[new] = nxt
                        ac.add(new)
                        if len(pending) >= limit:
                            break
        finally:
            if pending:
                self._client.cancel(list(pending))

    def close(self) -> None:
        """Close the client, and the ``LocalCluster`` if this executor started it."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _key_part(label: Callable[[Any], str], item: Any) -> str:
    try:
        text = label(item)
    except Exception:
        text = "item"
    safe = "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in text)
    return safe[:60] or "item"


def get_executor(
    backend: Literal["local", "dask"] = "local",
    n_workers: int | None = None,
    scheduler_address: str | None = None,
    *,
    resources: dict[str, float] | None = None,
    mp_context: str = "spawn",
    processes: bool = True,
    max_in_flight: int | None = None,
    cluster_kwargs: dict[str, Any] | None = None,
) -> SerialExecutor | LocalExecutor | DaskExecutor:
    """Return an executor for ``backend``; use it as a context manager.

    Parameters
    ----------
    backend : {"local", "dask"}
        ``local``: process pool (serial in-process with ``n_workers = 1``); ``dask``: Dask
        distributed. A ``scheduler_address`` implies ``dask``.
    n_workers : int, optional
        Workers (processes, or ``LocalCluster`` workers with one thread each). Default: the CPUs
        available to this process.
    scheduler_address : str, optional
        Connect to this running Dask scheduler instead of starting a ``LocalCluster``.
    resources : dict, optional
        Dask resources each task needs (``{"GPU": 1}``); ignored by the local backend.
    mp_context : str
        Start method of the local pool: ``spawn`` (default, safe with threads/CUDA) or ``forkserver``.
    processes : bool
        Dask ``LocalCluster`` workers as processes (default) or threads.
    max_in_flight : int, optional
        Most tasks submitted at once (local default ``2 * n_workers``; Dask default unlimited).
    cluster_kwargs : dict, optional
        Extra ``LocalCluster`` keyword arguments.

    Examples
    --------
    >>> with get_executor("local", 2) as ex:                          # doctest: +SKIP
    ...     for rec in ex.map_unordered(fit_gene, [(out, g) for g in genes]):
    ...         write_atomically(rec)
    """
    if scheduler_address:
        backend = "dask"
    if n_workers is None:
        n_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if int(n_workers) < 1:
        msg = f"executor.n_workers: must be >= 1; got {n_workers}"
        raise ConfigError(msg)
    if backend == "local":
        if resources:
            _log.debug("local executor ignores resources %s", resources)
        if int(n_workers) == 1:
            return SerialExecutor()
        return LocalExecutor(int(n_workers), mp_context=mp_context, max_in_flight=max_in_flight)
    if backend == "dask":
        return DaskExecutor(
            int(n_workers),
            scheduler_address,
            resources=resources,
            processes=processes,
            max_in_flight=max_in_flight,
            cluster_kwargs=cluster_kwargs,
        )
    msg = f"executor.backend: must be 'local' or 'dask'; got {backend!r}"
    raise ConfigError(msg)
