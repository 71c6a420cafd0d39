"""Every stage of ``rlaif run`` on Ray actors, each holding its own models.

The driver (the ``rlaif run`` process) keeps the run store. For each item of a stage (a prompt
to sample, revise or pair; a pair to label) it first does the stage from the store alone: an
item the store answers entirely is done in the driver, without any worker. Any other item goes
to a worker together with the stored results the driver read for it, so the worker starts
where the store stops; the worker makes the missing model calls with its own backends
(in-process models included, one per worker) and returns them; the driver writes them to the
store and derives the item again from the store. The results are thus the store's, in input
order, as the local executor's are, and a Ray run that was killed resumes like a local one.

A worker that dies (its node lost) is dropped and its items go to the workers left; when none
is left the run stops with an error that says to rerun the same command.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rlaif.backends import Backend, load_backend
from rlaif.backends.cached import CachedBackend
from rlaif.backends.ratelimit import RequestPolicy
from rlaif.compare import Judge, PairJudge
from rlaif.errors import RlaifError
from rlaif.pipeline.executor import apply_request_policy, is_server
from rlaif.pipeline.stages import Models, stage_fn

#: items sent to a worker at a time: pairs are quick, a prompt's sampling or revision is not
BATCH = {"sample": 1, "revise": 1, "pairs": 1, "label": 4}
#: the roles of a worker's models; the critic is the judge's backend
ROLES = ("policy", "critic")

log = logging.getLogger(__name__)


class _NotStored(Exception):
    """A call the run store cannot answer (the item goes to a Ray worker)."""


class _StoreOnly(Backend):
    """Stands in for a model while items are derived from the run store alone."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def generate(self, messages, **kwargs):
        raise _NotStored

    def choice_logprobs(self, messages, choices):
        raise _NotStored


class _ReadLog:
    """The run store as read in store-only mode: every result found is kept for the worker."""

    def __init__(self, store, found: dict[str, dict]) -> None:
        self.store = store
        self.found = found

    def get(self, key: str) -> dict | None:
        result = self.store.get(key)
        if result is not None:
            self.found[key] = result
        return result

    def put(self, key: str, kind: str, model: str, result: dict) -> bool:
        return self.store.put(key, kind, model, result)


@contextmanager
def store_only(*backends: CachedBackend) -> Iterator[dict[str, dict]]:
    """Within: the backends answer from the store only (``_NotStored`` otherwise); yields the
    stored results read meanwhile, by key."""
    distinct = list({id(b): b for b in backends}.values())
    saved = [(b, b.inner, b.store) for b in distinct]
    found: dict[str, dict] = {}
    for b, _, store in saved:
        b.inner = _StoreOnly(b.model_id)
        b.store = _ReadLog(store, found)
    try:
        yield found
    finally:
        for b, inner, store in saved:
            b.inner, b.store = inner, store


class _MemoryStore:
    """A Ray worker's store: the driver's results sent with an item, and the results it made
    (handed back to the driver with the item)."""

    LIMIT = 10_000  # results kept for reuse within the worker (pointwise scores of a prompt)

    def __init__(self) -> None:
        self.results: dict[str, dict] = {}
        self.new: list[tuple[str, str, str, dict]] = []

    def preload(self, found: dict[str, dict]) -> None:
        """Results the driver's store holds: used as they are, never handed back."""
        if len(self.results) + len(found) > self.LIMIT:
            self.results.clear()
        self.results.update(found)

    def view(self, role: str) -> _RoleView:
        """This store as one role's backend sees it (its new results are tagged with the role)."""
        return _RoleView(self, role)

    def get(self, key: str) -> dict | None:
        return self.results.get(key)

    def put(self, key: str, kind: str, role: str, result: dict) -> bool:
        if key in self.results:
            return False
        if len(self.results) >= self.LIMIT:
            self.results.clear()
        self.results[key] = result
        self.new.append((role, key, kind, result))
        return True


class _RoleView:
    def __init__(self, memory: _MemoryStore, role: str) -> None:
        self.memory = memory
        self.role = role

    def get(self, key: str) -> dict | None:
        return self.memory.get(key)

    def put(self, key: str, kind: str, model: str, result: dict) -> bool:
        return self.memory.put(key, kind, self.role, result)


class StageWorker:
    """A Ray actor: its own policy and judge backends (opened on first use), running batches of
    items of any stage (see ``RayStages``)."""

    def __init__(
        self,
        specs: dict[str, str | None],
        constitution,
        judge_settings: dict,
        config,
        policy: RequestPolicy | None,
    ) -> None:
        self.specs = specs
        self.constitution = constitution
        self.judge_settings = judge_settings
        self.config = config
        self.policy = policy
        self.memory = _MemoryStore()
        self._models: Models | None = None

    def _backend(self, role: str) -> CachedBackend | None:
        spec = self.specs[role]
        if spec is None:
            return None
        backend = load_backend(spec)  # shared within the process: policy = judge loads once
        if self.policy is not None:
            apply_request_policy(backend, self.policy)
        return CachedBackend(backend, self.memory.view(role))  # type: ignore[arg-type]

    def models(self) -> Models:
        """The worker's models, opened on the first item."""
        if self._models is None:
            critic = self._backend("critic")
            assert critic is not None
            self._models = Models(
                policy=self._backend("policy"),
                critic=critic,
                judge=Judge(critic, self.constitution, **self.judge_settings),
                constitution=self.constitution,
                config=self.config,
            )
        return self._models

    def node_id(self) -> str:
        """The Ray node this worker runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def run(self, stage: str, batch: list[tuple[Any, dict]]) -> tuple[list[list[tuple]], float]:
        """Do ``stage`` on each ``(item, stored results)``: for each, the calls made for it as
        ``(role, key, kind, result)``; and the seconds spent on the items (model calls, all
        but a little), loading the models not included."""
        fn = stage_fn(stage, self.models())
        out = []
        started = time.perf_counter()
        for item, found in batch:
            self.memory.preload(found)
            self.memory.new = []
            fn(item)
            out.append(self.memory.new)
        return out, time.perf_counter() - started


def model_judge(judge: PairJudge) -> Judge:
    """``judge`` as the model judge a worker rebuilds on its own backend; ValueError for any
    other judge (a scoring function runs in this process, not on Ray workers)."""
    if not isinstance(judge, Judge):
        raise ValueError(
            f"the ray executor runs a model judge on its workers, not a {type(judge).__name__}"
        )
    return judge


class RayStages:
    """A run's stages on Ray: one set of workers, started on first need, kept for all stages.

    ``models`` are the driver's (their backends must be ``CachedBackend`` on the run store);
    ``specs`` the model strings of the roles ``policy`` and ``critic`` the workers open;
    ``workers``: how many (None: one per CPU of the cluster; never more than its CPUs while a
    model runs in-process).
    """

    def __init__(
        self,
        models: Models,
        specs: dict[str, str | None],
        *,
        workers: int | None = None,
        requests: RequestPolicy | None = None,
    ) -> None:
        backends = {"policy": models.policy, "critic": models.critic}
        for role, backend in backends.items():
            if backend is not None and not isinstance(backend, CachedBackend):
                raise ValueError(f"the ray executor records calls in a run store: {role} needs one")
        self.models = models
        self.backends: dict[str, CachedBackend] = {
            r: b for r, b in backends.items() if isinstance(b, CachedBackend)
        }
        self.specs = specs
        self.workers = workers
        self.requests = requests
        self._ray: Any = None
        self._connected = False
        self._actors: list = []
        self._max_actors = 0
        self._nodes: dict[Any, str] = {}  # worker -> the Ray node it runs on
        self.lost = 0
        self.busy_s = 0.0  # seconds the workers spent on items, summed over workers

    # -- the driver's side of an item ------------------------------------------------------
    def _from_store(self, fn, item) -> tuple[bool, Any, dict[str, dict]]:
        """(whether the store answers all of ``item``, the result, the stored results read)."""
        with store_only(*self.backends.values()) as found:
            try:
                return True, fn(item), found
            except _NotStored:
                return False, None, found

    def _record(self, calls: list[tuple]) -> None:
        for role, key, kind, result in calls:
            self.backends[role].record(key, kind, result)

    def map(self, stage: str, items: Iterable) -> Iterator:
        """``stage`` over ``items``: results in input order, every model call in the store."""
        items = list(items)
        fn = stage_fn(stage, self.models)
        results: list[Any] = [None] * len(items)
        done = [False] * len(items)
        queue: deque[tuple[int, dict]] = deque()
        for i, item in enumerate(items):
            done[i], results[i], found = self._from_store(fn, item)
            if not done[i]:
                queue.append((i, found))
        if queue:
            self._start(len(queue))
        in_flight: dict = {}  # object ref -> (actor, [(index, found)])
        idle = list(self._actors)
        next_out = 0
        while next_out < len(items):
            if done[next_out]:
                yield results[next_out]
                results[next_out] = None
                next_out += 1
                continue
            while queue and idle:
                actor = idle.pop()
                batch = [queue.popleft() for _ in range(min(BATCH[stage], len(queue)))]
                ref = actor.run.remote(stage, [(items[i], found) for i, found in batch])
                in_flight[ref] = (actor, batch)
            if not in_flight:
                raise RlaifError(
                    "every Ray worker died; every result they sent is kept in the run store: "
                    "rerun the same command to continue"
                )
            [ref], _ = self._ray.wait(list(in_flight), num_returns=1)
            actor, batch = in_flight.pop(ref)
            answer = self._get(ref)
            if answer is None:  # the worker died: its items go to the others
                self._actors.remove(actor)
                self._max_actors -= 1  # not replaced: its node may be gone with it
                self.lost += 1
                queue.extendleft(reversed(batch))
                continue
            calls, busy = answer
            self.busy_s += busy
            idle.append(actor)
            if actor not in self._nodes:
                self._nodes[actor] = self._ray.get(actor.node_id.remote())
            for (i, _), item_calls in zip(batch, calls, strict=True):
                self._record(item_calls)
                # derived again from the store: where the store held a result the worker made
                # again, the store keeps the first, and the item must be what a rerun builds
                # from it; if that leads to a call not stored yet, the item goes out again
                done[i], results[i], found = self._from_store(fn, items[i])
                if not done[i]:
                    queue.append((i, found))

    def _get(self, ref) -> tuple | None:
        """A batch's calls and seconds; None if its worker died. A worker's RlaifError is raised
        as it is."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, RlaifError):
                raise cause from None
            raise RlaifError(f"a Ray worker failed: {_first_line(e)}") from e
        except ray.exceptions.RayActorError as e:
            log.warning("a Ray worker died (%s); its items go to the others", _first_line(e))
            return None

    # -- the cluster -----------------------------------------------------------------------
    def _start(self, wanted: int) -> None:
        """Connect (once) and start workers up to ``wanted`` and the pool's size."""
        if self._ray is None:
            self._ray = import_ray()
            self._connected = connect(self._ray)
            self._max_actors = self._pool_size()
            if self.requests is not None:
                self.requests = self.requests.shared_by(self._max_actors)
        ray = self._ray
        in_process = not all(is_server(s) for s in self.specs.values() if s is not None)
        # a worker with an in-process model needs a CPU; one that waits on a server does not
        actor = ray.remote(num_cpus=1 if in_process else 0)(StageWorker)
        settings = model_judge(self.models.judge).settings()
        while len(self._actors) < min(wanted, self._max_actors):
            self._actors.append(
                actor.remote(
                    self.specs,
                    self.models.constitution,
                    settings,
                    self.models.config,
                    self.requests,
                )
            )
        if not self._actors:
            raise RlaifError(
                "every Ray worker died; every result they sent is kept in the run store: "
                "rerun the same command to continue"
            )

    def _pool_size(self) -> int:
        cpus = int(self._ray.cluster_resources().get("CPU", 1))
        size = self.workers or cpus
        if not all(is_server(s) for s in self.specs.values() if s is not None):
            size = max(1, min(size, cpus))
        return size

    def summary(self) -> dict:
        """Where the work ran, for run.json: workers started, the nodes of those that sent
        results, workers lost (their items done again by others), and the seconds the workers
        spent on items, summed (model calls; start-up and model loads not included)."""
        return {
            "workers": len(self._actors) + self.lost,
            "nodes": len(set(self._nodes.values())),
            "workers_lost": self.lost,
            "worker_busy_s": round(self.busy_s, 3),
        }

    def close(self) -> None:
        """Stop the workers; leave the cluster if this run joined or started it."""
        if self._ray is None:
            return
        for actor in self._actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001 - a worker already gone needs no stopping
                pass
        self._actors = []
        if self._connected:
            self._ray.shutdown()

    def __enter__(self) -> RayStages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compare_on_ray(
    judge: PairJudge,
    spec: str,
    pairs: Sequence[tuple],
    workers: int,
    policy: RequestPolicy | None,
) -> Iterator:
    """The judge's preference for each pair, labelled on Ray workers opening ``spec``."""
    judge = model_judge(judge)
    if not isinstance(judge.backend, CachedBackend):
        raise ValueError("the ray executor records calls in a run store: the judge needs one")
    models = Models(None, judge.backend, judge, judge.constitution, None)
    with RayStages(
        models, {"policy": None, "critic": spec}, workers=workers or None, requests=policy
    ) as stages:
        yield from stages.map("label", pairs)


def import_ray():
    """The ``ray`` module, or an RlaifError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise RlaifError(
            "--executor ray needs Ray: pip install 'rlaif[ray]' (or use --executor local)"
        ) from e
    return ray


AUTH_HELP = (
    "the Ray cluster at RAY_ADDRESS={address} refused this process's token: set "
    "RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN (or the file "
    "~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH); the head node shows it with `ray get-auth-token`"
)


def is_auth_error(error: BaseException) -> bool:
    """Whether joining a cluster failed for a missing or wrong token.

    Read from the messages of the error and its causes: Ray raises ``ConnectionError("Failed to
    connect to Ray cluster")`` from a ``RuntimeError`` whose text carries the
    ``AuthenticationError: ... InvalidAuthToken`` of the last attempt.
    """
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = f"{type(cause).__name__} {cause}".lower()
        if "invalidauthtoken" in text or "authenticationerror" in text:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def connect(ray) -> bool:
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
        if address and is_auth_error(e):
            raise RlaifError(AUTH_HELP.format(address=address)) from e
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray cluster"
        raise RlaifError(f"cannot start or join {where} ({_first_line(e)})") from e
    return True


def _local_cpus() -> int:
    """CPUs this process may use (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__
