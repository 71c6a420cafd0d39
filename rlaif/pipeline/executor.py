"""Many independent model calls at once, results in the order they were asked for.

Two executors run the label stage of ``rlaif run``:

- ``local``: a thread pool in this process (``--concurrency`` threads). Only models behind a
  server (``openai:``) are called from several threads; an in-process llama.cpp model takes one
  call at a time, so its stages stay sequential.
- ``ray``: Ray actors, each holding its own judge backend (``load_backend`` in the worker), so
  in-process models run in parallel too, one per worker. ``RAY_ADDRESS`` names an existing
  cluster; otherwise a local one is started for the run. Workers report every model call they
  made; the driver writes them to the run store, so a Ray run resumes like a local one, and the
  pairs whose calls are all stored already are labelled in the driver without any worker.

Either way results come back in input order, never in completion order, so the outputs of a
run are byte-identical to a sequential run's.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from rlaif.backends import Backend, load_backend, parse_model_spec
from rlaif.backends.cached import CachedBackend
from rlaif.backends.ratelimit import RequestPolicy
from rlaif.compare import Judge, Preference
from rlaif.errors import RlaifError
from rlaif.rules import UNKNOWN

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")
#: concurrency of stages whose models are all servers, when --concurrency is not given
DEFAULT_SERVER_CONCURRENCY = 8
#: pairs sent to a Ray worker at a time
RAY_BATCH = 4

log = logging.getLogger(__name__)


def is_server(spec: str) -> bool:
    """Whether a model string names a model behind a server (callable from many threads)."""
    from rlaif.rules import is_programmatic

    if is_programmatic(spec):  # a user's function runs in this process, one call at a time
        return False
    return parse_model_spec(spec)[0] == "openai"


def stage_concurrency(concurrency: int | None, *specs: str) -> int:
    """Threads for a stage that calls these models: 1 unless every one of them is a server."""
    if not all(is_server(s) for s in specs):
        return 1
    return concurrency or DEFAULT_SERVER_CONCURRENCY


def apply_request_policy(backend: Backend, policy: RequestPolicy) -> Backend:
    """Give a server backend the run's timeout, retries and rate limits; others pass through."""
    setter = getattr(backend, "set_request_policy", None)
    if setter is not None:
        setter(policy)
    return backend


def ordered_map(fn: Callable[[T], R], items: Iterable[T], concurrency: int) -> Iterator[R]:
    """``fn`` over ``items`` with up to ``concurrency`` calls in flight; results in input order.

    The first error stops new work: calls not started are cancelled, calls in flight finish
    (their results are in the run store), then the error is raised.
    """
    if concurrency <= 1:
        yield from map(fn, items)
        return
    window = 2 * concurrency  # submitted ahead of the result being waited for
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="rlaif-call") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def label(judge: Judge, pair: tuple) -> Preference:
    """The judge's preference for ``(prompt, a, b)`` or ``(prompt, a, b, truncated)``, where
    ``truncated`` says whether ``a`` / ``b`` was cut at the token limit (None: unknown)."""
    prompt, a, b, *rest = pair
    return judge.compare(prompt, a, b, truncated=rest[0] if rest else UNKNOWN)


def compare_pairs(
    judge: Judge,
    pairs: Sequence[tuple],
    *,
    executor: str = "local",
    concurrency: int = 1,
    judge_spec: str | None = None,
    policy: RequestPolicy | None = None,
) -> Iterator[Preference]:
    """The judge's preference for each ``(prompt, a, b[, truncated])``, in order.

    ``local`` runs ``concurrency`` threads; ``ray`` runs ``concurrency`` Ray workers (default:
    one per CPU of the cluster), each opening ``judge_spec`` itself with ``policy``.
    """
    if executor == "local":
        yield from ordered_map(lambda pair: label(judge, pair), pairs, concurrency)
    elif executor == "ray":
        if judge_spec is None:
            raise ValueError("the ray executor needs the judge's model string")
        yield from _compare_on_ray(judge, judge_spec, pairs, concurrency, policy)
    else:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")


# -- Ray ------------------------------------------------------------------------------------
class _NotStored(Exception):
    """A call the run store cannot answer (the pair goes to a Ray worker)."""


class _StoreOnly(Backend):
    """Stands in for a model while pairs are labelled from the run store alone."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def generate(self, messages, **kwargs):
        raise _NotStored

    def choice_logprobs(self, messages, choices):
        raise _NotStored


@contextmanager
def _store_only(backend: CachedBackend):
    inner = backend.inner
    backend.inner = _StoreOnly(backend.model_id)
    try:
        yield
    finally:
        backend.inner = inner


class _MemoryStore:
    """A Ray worker's store: the results it made, handed back to the driver with each batch."""

    LIMIT = 10_000  # results kept for reuse within the worker (pointwise scores of a prompt)

    def __init__(self) -> None:
        self.results: dict[str, dict] = {}
        self.new: list[tuple[str, str, dict]] = []

    def get(self, key: str) -> dict | None:
        return self.results.get(key)

    def put(self, key: str, kind: str, model: str, result: dict) -> bool:
        if key in self.results:
            return False
        if len(self.results) >= self.LIMIT:
            self.results.clear()
        self.results[key] = result
        self.new.append((key, kind, result))
        return True


class LabelWorker:
    """A Ray actor: its own judge backend, labelling batches of pairs (see ``_compare_on_ray``)."""

    def __init__(self, spec: str, constitution, judge_settings: dict, policy) -> None:
        backend = load_backend(spec)
        if policy is not None:
            apply_request_policy(backend, policy)
        self.memory = _MemoryStore()
        self.judge = Judge(CachedBackend(backend, self.memory), constitution, **judge_settings)

    def compare(self, batch: list[tuple]) -> list[tuple[Preference, list]]:
        """Label each pair; with each preference, the model calls made for it."""
        out = []
        for pair in batch:
            self.memory.new = []
            pref = label(self.judge, pair)
            out.append((pref, self.memory.new))
        return out


def _judge_settings(judge: Judge) -> dict:
    return {
        "seed": judge.seed,
        "mode": judge.mode,
        "both_orders": judge.both_orders,
        "cot": judge.cot,
        "clamp": judge.clamp,
        "cot_max_tokens": judge.cot_max_tokens,
        "cot_temperature": judge.cot_temperature,
        "cot_seed": judge.cot_seed,
    }


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise RlaifError(
            "--executor ray needs Ray: pip install 'rlaif[ray]' (or use --executor local)"
        ) from e
    return ray


def _connect(ray) -> bool:
    """Join ``RAY_ADDRESS``'s cluster or start a local one; True if this call connected."""
    if ray.is_initialized():
        return False
    settings = {"logging_level": logging.WARNING, "log_to_driver": False}
    address = os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, **settings)
        else:
            ray.init(num_cpus=_local_cpus(), include_dashboard=False, **settings)
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError...
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray cluster"
        raise RlaifError(f"cannot start or join {where} ({e})") from e
    return True


def _local_cpus() -> int:
    """CPUs this process may use (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _compare_on_ray(
    judge: Judge,
    spec: str,
    pairs: Sequence[tuple],
    workers: int,
    policy: RequestPolicy | None,
) -> Iterator[Preference]:
    if not isinstance(judge.backend, CachedBackend):
        raise ValueError("the ray executor records calls in a run store: the judge needs one")
    done: list[Preference | None] = [None] * len(pairs)
    todo: list[int] = []
    with _store_only(judge.backend):
        for i, pair in enumerate(pairs):
            try:
                done[i] = label(judge, pair)
            except _NotStored:
                todo.append(i)
    if not todo:
        yield from done  # type: ignore[misc]
        return
    ray = _import_ray()
    connected = _connect(ray)
    try:
        server = is_server(spec)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # a worker with an in-process model needs a CPU; one that waits on a server does not
        workers = workers or cpus
        if not server:
            workers = max(1, min(workers, cpus))
        workers = min(workers, len(todo))
        if policy is not None:
            policy = policy.shared_by(workers)
        actor = ray.remote(num_cpus=0 if server else 1)(LabelWorker)
        settings = _judge_settings(judge)
        pool = ray.util.ActorPool(
            [actor.remote(spec, judge.constitution, settings, policy) for _ in range(workers)]
        )
        batches = [todo[k : k + RAY_BATCH] for k in range(0, len(todo), RAY_BATCH)]
        results = pool.map(lambda w, batch: w.compare.remote([pairs[i] for i in batch]), batches)
        arrived: dict[int, Preference] = {}
        batch_iter = zip(batches, results, strict=True)
        for i in range(len(pairs)):
            if done[i] is not None:
                yield done[i]
                continue
            while i not in arrived:
                batch, labelled = _next_batch(ray, batch_iter)
                for j, (_, calls) in zip(batch, labelled, strict=True):
                    for key, kind, result in calls:
                        judge.backend.record(key, kind, result)
                    # rebuilt from the store: where a resumed pair had one order stored already,
                    # the store keeps that first result, and the label must be the one a rerun
                    # would build from it, not the worker's recomputation
                    with _store_only(judge.backend):
                        arrived[j] = label(judge, pairs[j])
            yield arrived.pop(i)
    finally:
        if connected:
            ray.shutdown()


def _next_batch(ray, batches: Iterator) -> tuple:
    """The next labelled batch from the workers; a worker's RlaifError is raised as it is."""
    try:
        return next(batches)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, RlaifError):
            raise cause from None
        raise RlaifError(f"a Ray worker failed: {_first_line(e)}") from e
    except ray.exceptions.RayActorError as e:
        raise RlaifError(
            f"a Ray worker died ({_first_line(e)}); every result it sent is kept in the run "
            "store: rerun the same command to continue"
        ) from e


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__
