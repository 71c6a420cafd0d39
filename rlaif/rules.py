"""Programmatic judges: scoring functions named by one string, called as TRL calls rewards.

===============================  ==========================================================
``python:MODULE:FUNCTION``       any function ``f(prompts, completions, **kw) -> list[float]``
                                 (TRL's reward-function signature), imported from MODULE
                                 (a module on ``PYTHONPATH`` or installed)
``rule:max_words=N``             1.0 when the response has at most N words and ended by
                                 itself, else 0.0
``rule:min_words=N``             1.0 when it has at least N words and ended by itself
``rule:words=MIN-MAX``           1.0 when it has MIN to MAX words and ended by itself (a length
                                 range: an answer, neither empty nor rambling)
``rule:contains=TEXT``           1.0 when it contains TEXT (case-insensitive)
``rule:not_contains=TEXT``       1.0 when it does not contain TEXT (case-insensitive)
``rule:regex=PATTERN``           1.0 when PATTERN (Python ``re``) matches somewhere in it
``rule:json``                    1.0 when it is a JSON object or array (one surrounding ```
                                 fence allowed); a bare number, string or ``NaN`` fails
``rule:no_loop``                 1.0 unless it is stuck in a loop (:func:`is_looping`, the test
                                 the training guards use)
``rule:no_repeat``               1.0 unless a sentence of 3+ words occurs twice or it is stuck
                                 in a loop (:func:`is_looping`)
``rule:no_pii``                  1.0 unless it holds an e-mail address or a phone number
===============================  ==========================================================

**An answer cut at the token limit never passes a length rule.** Its first words say nothing
of how long the whole answer would have been, and a loop cut at the limit often holds a
passing number of words. Wherever a response's end is known, rlaif passes it as the keyword
``truncated`` (one ``bool`` or ``None`` per completion: ``True`` when the generation stopped at
the token limit, ``None`` when unknown), beside TRL's own keywords in training and alone
outside it; the length rules (``words``, ``max_words``, ``min_words``) score a truncated
completion 0.0. A ``python:`` function receives it too when its signature takes ``truncated``
or ``**kwargs``.

Outside training, rlaif calls the function with TRL's conversational form, the form rlaif's own
GRPO data has: ``prompts`` is a list of message lists (a text prompt becomes one user message)
and ``completions`` a list of ``[{"role": "assistant", "content": text}]``. The built-in rules
accept plain strings too. The function must return one finite number per completion (``None``
is allowed only in training, where TRL skips it); anything else raises :class:`RuleError`
naming the function and the record.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rlaif.errors import RuleError

PREFIXES = ("rule:", "python:")
VALID_RULES = (
    "rule:max_words=N, rule:min_words=N, rule:words=MIN-MAX, rule:contains=TEXT, "
    "rule:not_contains=TEXT, rule:regex=PATTERN, rule:json, rule:no_loop, rule:no_repeat, "
    "rule:no_pii, "
    "python:MODULE:FUNCTION"
)


def is_programmatic(spec: object) -> bool:
    """Whether a judge string names a programmatic judge (``rule:...`` or ``python:...``)."""
    return isinstance(spec, str) and spec.strip().startswith(PREFIXES)


def completion_text(value: object) -> str:
    """The text of a prompt or completion in either TRL form (a string or chat messages).

    For a message list this is the last message's content: the assistant's reply of a
    completion, the user's last turn of a prompt.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("content", ""))
    if isinstance(value, list | tuple) and value:
        return completion_text(value[-1])
    return ""


# -- built-in rules ---------------------------------------------------------------------------
def _words(text: str) -> int:
    return len(text.split())


_FENCE = re.compile(r"^```[A-Za-z]*\s*\n(.*)\n\s*```$", re.DOTALL)
_SENTENCE = re.compile(r"[.!?\n]+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
# a phone number: digits in groups split by spaces, dashes, brackets or a "+"; a dot only
# between groups of 2-4 digits ("555.123.4567"), so a decimal such as 3.14159265 is not one
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s()-]{7,}\d(?![\w.]\d)|\b\d{2,4}(?:\.\d{2,4}){2,}\b")
_WORD = re.compile(r"\w+")

#: an answer whose 4-word sequences are less than this share distinct is looping
LOOP_DISTINCT = 0.75
#: one word this many times in a row is a loop ("Sweetshree, Sweetshree, ...")
LOOP_RUN = 4


def is_looping(text: str) -> bool:
    """True for an answer stuck in repetition: one word :data:`LOOP_RUN`+ times in a row
    (``"Sweetshree, Sweetshree, ..."``), or fewer than :data:`LOOP_DISTINCT` of its 4-word
    sequences distinct (a sentence said over and over; a list or code block is not enough).

    The training guards (:mod:`rlaif.train.drift`) and ``rule:no_loop`` share this test.
    """
    words = [w.lower() for w in _WORD.findall(text)]
    run = 1
    for prev, word in zip(words, words[1:], strict=False):
        run = run + 1 if word == prev else 1
        if run >= LOOP_RUN:
            return True
    grams = list(zip(words, words[1:], words[2:], words[3:], strict=False))
    return len(grams) >= 8 and len(set(grams)) / len(grams) < LOOP_DISTINCT


def _is_json(text: str) -> bool:
    """A JSON object or array: what a request for JSON output asks for. A bare number or
    string is valid JSON text but not a structured answer; ``NaN`` and ``Infinity`` are not
    JSON at all (Python's parser accepts them)."""
    text = text.strip()
    fenced = _FENCE.match(text)

    def no_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(fenced.group(1) if fenced else text, parse_constant=no_constant)
    except ValueError:
        return False
    return isinstance(value, dict | list)


def _no_repeat(text: str) -> bool:
    if is_looping(text):
        return False
    seen: set[str] = set()
    for sentence in _SENTENCE.split(text.lower()):
        words = re.findall(r"\w+", sentence)
        if len(words) < 3:
            continue
        key = " ".join(words)
        if key in seen:
            return False
        seen.add(key)
    return True


def _no_pii(text: str) -> bool:
    if _EMAIL.search(text):
        return False
    # a phone number: 9+ digits in one group of digits and separators
    return not any(sum(c.isdigit() for c in m.group()) >= 9 for m in _PHONE.finditer(text))


def _int_arg(spec: str, name: str, arg: str) -> int:
    try:
        value = int(arg)
    except ValueError:
        raise RuleError(f"{spec}: {name} needs a whole number, not {arg!r}") from None
    if value < 0:
        raise RuleError(f"{spec}: {name} must be >= 0, not {value}")
    return value


def _text_arg(spec: str, name: str, arg: str) -> str:
    if not arg:
        raise RuleError(f"{spec}: {name} needs a value, e.g. rule:{name}=TEXT")
    return arg


#: the rules about an answer's length: a truncated answer fails them
LENGTH_RULES = ("words", "max_words", "min_words")


def _builtin(spec: str) -> Callable[[str], bool]:
    """The pass/fail test of one text that a ``rule:`` string names; RuleError if unknown."""
    body = spec.strip().removeprefix("rule:")
    name, has_arg, arg = body.partition("=")
    if name == "max_words":
        limit = _int_arg(spec, name, arg)
        return lambda text: _words(text) <= limit
    if name == "min_words":
        least = _int_arg(spec, name, arg)
        return lambda text: _words(text) >= least
    if name == "words":
        low, dash, high = arg.partition("-")
        least, most = _int_arg(spec, name, low), _int_arg(spec, name, high) if dash else -1
        if not dash or least > most:
            raise RuleError(f"{spec}: words needs a range MIN-MAX with MIN <= MAX, e.g. words=8-40")
        return lambda text: least <= _words(text) <= most
    if name == "contains":
        needle = _text_arg(spec, name, arg).lower()
        return lambda text: needle in text.lower()
    if name == "not_contains":
        needle = _text_arg(spec, name, arg).lower()
        return lambda text: needle not in text.lower()
    if name == "regex":
        try:
            pattern = re.compile(_text_arg(spec, name, arg))
        except re.error as e:
            raise RuleError(f"{spec}: not a valid regular expression ({e})") from None
        return lambda text: pattern.search(text) is not None
    tests = {
        "json": _is_json,
        "no_loop": lambda text: not is_looping(text),
        "no_repeat": _no_repeat,
        "no_pii": _no_pii,
    }
    if name in tests and not has_arg:
        return tests[name]
    raise RuleError(f"unknown rule {spec!r}; valid forms: {VALID_RULES}")


class BuiltinRule:
    """A built-in rule as a TRL reward function: 1.0 for each completion that passes, else 0.0."""

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        self.test = _builtin(self.spec)
        #: TRL names a reward's logged metrics after this
        self.__name__ = self.spec.removeprefix("rule:").partition("=")[0]
        #: a length rule fails an answer cut at the token limit
        self.about_length = self.__name__ in LENGTH_RULES

    def __call__(
        self,
        prompts: Sequence[object],
        completions: Sequence[object],
        truncated: Sequence[bool | None] | None = None,
        **_: object,
    ) -> list[float]:
        """One score per completion: 1.0 when it passes the rule, 0.0 when it fails.

        ``truncated`` (one flag per completion, None: unknown) fails a cut-off completion on
        a length rule.
        """
        cut = _flags(truncated, len(completions))
        return [
            1.0 if self.test(completion_text(c)) and not (self.about_length and t) else 0.0
            for c, t in zip(completions, cut, strict=True)
        ]


def _flags(truncated: Sequence[bool | None] | None, n: int) -> list[bool | None]:
    """One truncation flag per completion (None: unknown); ValueError on a wrong length."""
    if truncated is None:
        return [None] * n
    if len(truncated) != n:
        raise ValueError(f"{len(truncated)} truncation flags for {n} completions")
    return list(truncated)


def takes_truncated(function: Callable) -> bool:
    """Whether ``function`` accepts the ``truncated`` keyword (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: pass nothing extra
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "truncated" for p in params)


def _import_function(spec: str) -> Callable:
    """The function a ``python:MODULE:FUNCTION`` string names; RuleError naming what is wrong."""
    body = spec.strip().removeprefix("python:")
    module_name, _, function_name = body.rpartition(":")
    if not module_name or not function_name:
        raise RuleError(f"{spec}: write python:MODULE:FUNCTION (e.g. python:my_rewards:length)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise RuleError(
                f"{spec}: no module named {module_name!r}; install it or put the folder that "
                "holds it on PYTHONPATH"
            ) from None
        raise RuleError(f"{spec}: importing {module_name!r} failed: {e}") from e
    except Exception as e:  # the user's module raised while importing
        raise RuleError(f"{spec}: importing {module_name!r} failed: {type(e).__name__}: {e}") from e
    function = getattr(module, function_name, None)
    if function is None:
        raise RuleError(f"{spec}: module {module_name!r} has no attribute {function_name!r}")
    if not callable(function):
        raise RuleError(f"{spec}: {module_name}.{function_name} is not callable")
    return function


@dataclass(frozen=True)
class ScoreFunction:
    """A scoring function named by a judge string, with TRL's reward-function signature."""

    spec: str
    function: Callable

    @property
    def name(self) -> str:
        """How errors and logs name the function (``module.function`` or the rule string)."""
        if self.spec.startswith("python:"):
            return self.spec.removeprefix("python:").replace(":", ".")
        return self.spec

    def __call__(
        self,
        prompts: Sequence[object],
        completions: Sequence[object],
        truncated: Sequence[bool | None] | None = None,
    ) -> list[float]:
        """One finite score per completion; RuleError naming the function and the record.

        ``truncated`` (one flag per completion: cut at the token limit, None when unknown) is
        passed on as a keyword to a function that takes it.
        """
        extra = {}
        if truncated is not None and takes_truncated(self.function):
            extra["truncated"] = _flags(truncated, len(completions))
        return _call_checked(self.name, self.function, list(prompts), list(completions), extra)


def _call_checked(
    name: str,
    function: Callable,
    prompts: list,
    completions: list,
    keywords: dict,
    *,
    allow_none: bool = False,
) -> list[float]:
    """``function``'s scores of ``completions`` as :func:`validate_scores` checks them; an
    error it raises becomes a RuleError naming ``name`` and the records it was called on."""
    try:
        scores = function(prompts=prompts, completions=completions, **keywords)
    except Exception as e:
        raise RuleError(
            f"{name} raised {type(e).__name__}: {e} (called on records "
            f"0-{len(completions) - 1}: {_preview(completions)})"
        ) from e
    return validate_scores(name, scores, completions, allow_none=allow_none)


def _preview(completions: Sequence[object]) -> str:
    texts = [completion_text(c) for c in completions]
    return "; ".join(f"{i}: {t[:40]!r}" for i, t in enumerate(texts[:3]))


def validate_scores(
    name: str, scores: object, completions: Sequence[object], *, allow_none: bool = False
) -> list[float]:
    """``scores`` as floats if it is one finite number per completion; RuleError otherwise.

    ``allow_none`` lets a record's score be None (TRL's GRPO skips it as NaN).
    """
    if not isinstance(scores, list | tuple):
        raise RuleError(
            f"{name} returned {type(scores).__name__}, not a list of numbers "
            f"(one per completion, TRL's reward-function signature)"
        )
    if len(scores) != len(completions):
        raise RuleError(
            f"{name} returned {len(scores)} scores for {len(completions)} completions; "
            "it must return one per completion"
        )
    out = []
    for i, s in enumerate(scores):
        if s is None and allow_none:
            out.append(None)
            continue
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s):
            raise RuleError(
                f"{name} returned {s!r} for record {i} "
                f"({completion_text(completions[i])[:60]!r}); expected a finite number"
            )
        out.append(float(s))
    return out


def cut_at_limit(
    completion_ids: object, n: int, max_completion_length: int | None, eos_token_id: int | None
) -> list[bool | None]:
    """Whether each of ``n`` completions was cut at the token limit, from its token ids as TRL
    passes them (``completion_ids``): it holds ``max_completion_length`` tokens and does not end
    with ``eos_token_id``. All None (unknown) without a limit or without one id list each."""
    if (
        max_completion_length is None
        or not isinstance(completion_ids, Sequence)
        or len(completion_ids) != n
    ):
        return [None] * n
    return [
        len(ids) >= max_completion_length
        and (eos_token_id is None or not ids or ids[-1] != eos_token_id)
        for ids in completion_ids
    ]


class TrainingReward:
    """A scoring function handed to TRL's GRPOTrainer: every keyword TRL passes goes through,
    and its output is checked (None allowed: TRL leaves that record out).

    With ``max_completion_length`` (the trainer's) it adds the keyword ``truncated``: a
    completion of that many tokens that does not end with ``eos_token_id`` was cut at the limit.
    """

    def __init__(
        self,
        score_function: ScoreFunction,
        *,
        max_completion_length: int | None = None,
        eos_token_id: int | None = None,
    ) -> None:
        self.score_function = score_function
        self.max_completion_length = max_completion_length
        self.eos_token_id = eos_token_id
        #: TRL names the reward's logged metrics after this
        self.__name__ = getattr(score_function.function, "__name__", score_function.name)

    def truncated(self, completion_ids: Sequence[Sequence[int]]) -> list[bool | None]:
        """Whether each completion (its token ids, as TRL passes them) was cut at the limit."""
        return cut_at_limit(
            completion_ids, len(completion_ids), self.max_completion_length, self.eos_token_id
        )

    def __call__(self, prompts: list, completions: list, **kwargs: object) -> list[float | None]:
        """One reward per completion, as TRL calls a reward function."""
        function = self.score_function.function
        ids = kwargs.get("completion_ids")
        if "truncated" not in kwargs and isinstance(ids, list) and takes_truncated(function):
            kwargs["truncated"] = self.truncated(ids)
        return _call_checked(
            self.score_function.name, function, prompts, completions, kwargs, allow_none=True
        )


def load_score_function(spec: str) -> ScoreFunction:
    """The scoring function a ``rule:`` or ``python:`` string names; RuleError if it cannot."""
    spec = (spec or "").strip()
    if spec.startswith("rule:"):
        return ScoreFunction(spec, BuiltinRule(spec))
    if spec.startswith("python:"):
        return ScoreFunction(spec, _import_function(spec))
    raise RuleError(f"{spec!r} is not a programmatic judge; valid forms: {VALID_RULES}")


def check_spec(spec: str) -> None:
    """Fail early (RuleError) on a ``rule:`` string that names no rule; imports nothing."""
    if spec.strip().startswith("rule:"):
        _builtin(spec)
    elif spec.strip().startswith("python:"):
        body = spec.strip().removeprefix("python:")
        if ":" not in body or not all(body.rpartition(":")[::2]):
            raise RuleError(f"{spec}: write python:MODULE:FUNCTION")
    else:
        raise RuleError(f"{spec!r} is not a check; valid forms: {VALID_RULES}")


# -- scoring a pair ---------------------------------------------------------------------------
DEFAULT_TEMPERATURE = 1.0


def as_conversation(prompt: str | list[dict]) -> list[dict]:
    """A prompt in TRL's conversational form: messages as given, a text as one user turn."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def as_completion(text: str) -> list[dict]:
    """A response in TRL's conversational form: one assistant message."""
    return [{"role": "assistant", "content": text}]


#: truncation flags of a pair of responses (None: unknown)
Truncated = tuple[bool | None, bool | None]
UNKNOWN: Truncated = (None, None)


def score_pair(
    function: ScoreFunction,
    prompt: str | list[dict],
    a: str,
    b: str,
    truncated: Truncated = UNKNOWN,
) -> tuple[float, float]:
    """The function's scores of responses ``a`` and ``b`` to one prompt, in one call.

    ``truncated`` says whether each was cut at the token limit (None: unknown); the function
    gets it when that is known for either.
    """
    conversation = as_conversation(prompt)
    flags = list(truncated) if any(t is not None for t in truncated) else None
    sa, sb = function(
        [conversation, conversation], [as_completion(a), as_completion(b)], truncated=flags
    )
    return sa, sb


def soft_label(score_a: float, score_b: float, temperature: float = DEFAULT_TEMPERATURE) -> float:
    """``sigmoid((score_a - score_b) / temperature)``; exactly 0.5 for equal scores."""
    x = (score_a - score_b) / temperature
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
