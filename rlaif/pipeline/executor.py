"""Many independent model calls at once, results in the order they were asked for.

Two executors run the stages of ``rlaif run`` (sample, revise, pair, label):

- ``local``: a thread pool in this process (``--concurrency`` threads). Only models behind a
  server (``openai:``) are called from several threads; an in-process llama.cpp model takes one
  call at a time, so its stages stay sequential, and its judge calls of one prompt are planned
  together (``label_by_prompt``) so that the prefix they share is evaluated once.
- ``ray`` (``ray_executor``): Ray actors, each holding its own policy and judge backends
  (``load_backend`` in the worker), so in-process models run in parallel too, one per worker.
  ``RAY_ADDRESS`` names an existing cluster; otherwise a local one is started for the run.
  Workers report every model call they made; the driver writes them to the run store, so a Ray
  run resumes like a local one, and the items whose calls are all stored already are done in
  the driver without any worker.

Either way results come back in input order, never in completion order, so the outputs of a
run are byte-identical to a sequential run's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import groupby
from typing import TypeVar

from rlaif.backends import Backend, parse_model_spec
from rlaif.backends.ratelimit import RequestPolicy
from rlaif.compare import Judge, PairJudge, Preference
from rlaif.rules import UNKNOWN

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")
#: concurrency of stages whose models are all servers, when --concurrency is not given
DEFAULT_SERVER_CONCURRENCY = 8


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


def label(judge: PairJudge, pair: tuple) -> Preference:
    """The judge's preference for ``(prompt, a, b)`` or ``(prompt, a, b, truncated)``, where
    ``truncated`` says whether ``a`` / ``b`` was cut at the token limit (None: unknown)."""
    prompt, a, b, *rest = pair
    return judge.compare(prompt, a, b, truncated=rest[0] if rest else UNKNOWN)


def label_by_prompt(judge: PairJudge, pairs: Iterable[tuple]) -> Iterator[Preference]:
    """:func:`label` of each pair, in order, on one thread, the judge calls of each prompt's
    consecutive pairs planned together (:meth:`rlaif.compare.Judge.compare_many`) so that an
    in-process model evaluates what they share once; the same preferences as pair by pair."""
    for _, group in groupby(pairs, key=lambda pair: pair[0]):
        items = [(prompt, a, b, rest[0] if rest else UNKNOWN) for prompt, a, b, *rest in group]
        if isinstance(judge, Judge):
            yield from judge.compare_many(items)
        else:
            yield from (label(judge, item) for item in items)


def compare_pairs(
    judge: PairJudge,
    pairs: Sequence[tuple],
    *,
    executor: str = "local",
    concurrency: int = 1,
    judge_spec: str | None = None,
    policy: RequestPolicy | None = None,
) -> Iterator[Preference]:
    """The judge's preference for each ``(prompt, a, b[, truncated])``, in order.

    ``local`` runs ``concurrency`` threads; ``ray`` runs ``concurrency`` Ray workers (default:
    one per CPU of the cluster), each opening ``judge_spec`` itself with ``policy``: a model
    judge (:class:`rlaif.compare.Judge`) only.
    """
    if executor == "local":
        yield from ordered_map(lambda pair: label(judge, pair), pairs, concurrency)
    elif executor == "ray":
        if judge_spec is None:
            raise ValueError("the ray executor needs the judge's model string")
        from rlaif.pipeline.ray_executor import compare_on_ray  # imports stages, which import this

        yield from compare_on_ray(judge, judge_spec, pairs, concurrency, policy)
    else:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
