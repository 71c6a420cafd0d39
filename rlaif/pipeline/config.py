"""What one run of the main job is asked to do: ``RunConfig``, checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlaif.backends.ratelimit import RequestPolicy
from rlaif.pipeline.executor import (
    EXECUTORS,
)
from rlaif.rules import is_programmatic


@dataclass
class RunConfig:
    """Everything that defines a run; defaults follow the papers (both orders, soft labels)."""

    out: Path
    #: prompts file (JSONL, JSON, CSV, text); None for the built-in set
    prompts: str | None = None
    policy: str = "smollm2"
    judge: str = "smollm2"
    #: constitution file or "default"
    constitution: str = "default"
    n_responses: int = 2
    #: critique-revise rounds per response (0: no revisions, no sft.jsonl records)
    revision_rounds: int = 1
    pairs: Literal["all", "best-worst"] = "all"
    mode: Literal["pairwise", "pointwise"] = "pairwise"
    cot: bool = False
    #: pairs with |p - 0.5| below this go to low_margin.jsonl instead of preferences.jsonl
    min_margin: float = 0.0
    #: write text prompts and their responses as bare strings (for base models) instead of
    #: TRL's conversational form (message lists); the store is the same either way
    text_format: bool = False
    limit: int | None = None
    seed: int = 0
    temperature: float = 0.8
    #: longest policy response and revision, in tokens
    max_tokens: int = 128
    #: dollars per million input / output tokens, for every model of the run (0 when local)
    price_in: float = 0.0
    price_out: float = 0.0
    #: YAML/JSON price file: model string -> {input, output}; models it names override the above
    price_file: str | None = None
    #: dollars the run directory may spend in all (earlier invocations' calls included)
    max_cost: float | None = None
    #: estimate calls, tokens and dollars, call no model, write nothing
    dry_run: bool = False
    #: calls in flight at once to models behind a server (None: 8 when every model of a stage
    #: is a server; in-process llama.cpp models always take one call at a time). With the ray
    #: executor: the number of label workers (None: one per CPU of the cluster)
    concurrency: int | None = None
    #: sequences an in-process llama.cpp model decodes at once in the generate and revise stages
    #: (responses, critiques and rewrites of consecutive prompts); 1: one at a time, the old
    #: path (also with ``max_cost``, checked call by call). The outputs are the same either way.
    batch_size: int = 8
    #: where pairs are labelled: "local" (threads in this process) or "ray" (Ray workers)
    executor: Literal["local", "ray"] = "local"
    #: requests and tokens per minute to each server (None: no limit)
    rpm: float | None = None
    tpm: float | None = None
    #: seconds to wait for one reply before retrying it, and retries per request
    timeout: float = 120.0
    max_retries: int = 8

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("n_responses", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.revision_rounds < 0:
            raise ValueError(f"revision_rounds must be >= 0, not {self.revision_rounds}")
        if self.n_responses < 2 and self.revision_rounds == 0:
            raise ValueError(
                "nothing to compare: n_responses=1 and revision_rounds=0 form no pair; "
                "raise one of them"
            )
        if not 0.0 <= self.min_margin < 0.5:
            raise ValueError(f"min_margin must be in [0, 0.5), not {self.min_margin}")
        if self.pairs not in ("all", "best-worst"):
            raise ValueError(f"pairs must be 'all' or 'best-worst', not {self.pairs!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, not {self.limit}")
        if self.price_in < 0 or self.price_out < 0:
            raise ValueError("prices must be >= 0")
        if self.max_cost is not None and self.max_cost < 0:
            raise ValueError(f"max_cost must be >= 0, not {self.max_cost}")
        if self.max_cost is not None and self.executor == "ray":
            raise ValueError(
                "--max-cost is enforced in this process, and --executor ray labels in Ray "
                "workers; use --executor local with --max-cost"
            )
        self._check_execution()

    def _check_execution(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(
                f"executor must be one of {', '.join(EXECUTORS)}, not {self.executor!r}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {self.batch_size}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {self.concurrency}")
        servers = [m for m in (self.policy, self.judge) if m.strip().startswith("openai:")]
        if (self.concurrency or 1) > 1 and self.executor == "local" and not servers:
            raise ValueError(
                f"--concurrency {self.concurrency}: {self.policy} and {self.judge} run in this "
                "process, which takes one llama.cpp call at a time; use --concurrency 1, a model "
                "behind a server (openai:MODEL@URL), or --executor ray (one model per worker)"
            )
        if self.executor == "ray" and is_programmatic(self.judge):
            raise ValueError(
                f"--judge {self.judge} runs in this process, not on Ray workers; "
                "use --executor local"
            )
        if self.executor == "ray" and self.max_cost is not None:
            raise ValueError(
                "--max-cost is checked in this process, not on Ray workers; "
                "use --executor local with --max-cost"
            )
        RequestPolicy(self.timeout, self.max_retries, self.rpm, self.tpm)  # ValueError if bad

    def request_policy(self) -> RequestPolicy:
        """Timeout, retries and rate limits of the requests to every server of the run."""
        return RequestPolicy(self.timeout, self.max_retries, self.rpm, self.tpm)
