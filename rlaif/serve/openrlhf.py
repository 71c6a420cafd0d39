"""OpenRLHF's remote reward-model request, read into (prompt, response) pairs.

OpenRLHF (``--remote_rm_url http://HOST:PORT/get_reward``) posts
``{"query": [...], "prompts": [...], "labels": [...]}``: ``query[i]`` is the prompt and the
sampled response decoded together, chat template included; ``prompts[i]`` the prompt as the
policy saw it (templated with ``--apply_chat_template``); ``labels[i]`` the dataset's label
(unused here). It sends no header but ``Content-Type`` and reads ``rewards`` (newer versions
also ``scores``).

How a query is split: when ``prompts[i]`` is present and found in ``query[i]``, the response
is the text after its first occurrence (only special tokens, a BOS or left padding, may come
before it: OpenRLHF decodes left-padded sequences without skipping special tokens). Without
``prompts`` (older clients send only ``query``), a ChatML (``<|im_start|>assistant``) or
Llama 3 (``<|start_header_id|>assistant<|end_header_id|>``) query is split at its last
assistant header. A query that cannot be split is a failed item, never guessed. From the
response, trailing special tokens (``<|im_end|>``, ``<|eot_id|>``, ``</s>``, ``<pad>``, any
``<|...|>``: end of turn and right padding) are stripped; from a templated prompt, the judge
is shown the last user turn.

rlaif's own client sends ``{"prompts": [...], "responses": [...]}`` instead, already split.

Either form may carry ``"truncated": [...]``, one flag per item: ``true`` when the response was
cut at the token limit, ``false`` when it ended, ``null`` when unknown. It reaches the length
rules and the principles' checks as it does in process (a cut answer fails ``words``,
``max_words``, ``min_words``). Absent, every flag is unknown, which the rules read as not cut;
OpenRLHF's client does not send it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

#: a special token as tokenizers write them: <|im_end|>, <|eot_id|>, </s>, <pad>, <s>, ...
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?s>|<pad>|<unk>|<eos>|<bos>")
_SPECIAL_AT_END = re.compile(f"(?:{_SPECIAL.pattern})$")
_ASSISTANT = re.compile(
    r"<\|im_start\|>assistant\s*\n|<\|start_header_id\|>assistant<\|end_header_id\|>\s*"
)
_USER_TURN = re.compile(
    r"(?:<\|im_start\|>user\s*\n|<\|start_header_id\|>user<\|end_header_id\|>\s*)"
    r"(.*?)(?:<\|im_end\|>|<\|eot_id\|>|$)",
    re.DOTALL,
)


class RequestError(ValueError):
    """A request body that is not in a form the server reads (the reply is HTTP 400)."""


@dataclass(frozen=True)
class Item:
    """One (prompt, response) to score, or the reason it cannot be read from the request."""

    prompt: str
    response: str
    error: str = ""
    #: cut at the token limit (None: unknown)
    truncated: bool | None = None


def strip_end(text: str) -> str:
    """The response without trailing special tokens (end of turn, padding)."""
    end = len(text.rstrip())
    # a token is at most 44 characters: each search looks at the 48 before ``end``
    while found := _SPECIAL_AT_END.search(text, max(0, end - 48), end):
        end = found.start()
        while end and text[end - 1].isspace():
            end -= 1
    return text[:end].strip()


def user_text(prompt: str) -> str:
    """The last user turn of a templated prompt (ChatML or Llama 3), else the prompt itself."""
    turns = _USER_TURN.findall(prompt)
    return turns[-1].strip() if turns else prompt.strip()


def split_query(query: str, prompt: str | None) -> Item:
    """One OpenRLHF query split into the prompt and the response (see the module docstring)."""
    if prompt:
        at = query.find(prompt)
        # the prompt must open the query; only special tokens (BOS, left padding) may come first
        if at < 0 or _SPECIAL.sub("", query[:at]).strip():
            return Item(user_text(prompt), "", "the query does not start with its prompt")
        return Item(user_text(prompt), strip_end(query[at + len(prompt) :]))
    headers = list(_ASSISTANT.finditer(query))
    if not headers:
        return Item("", "", "no prompts given and no assistant turn in the query to split at")
    last = headers[-1]
    return Item(user_text(query[: last.start()]), strip_end(query[last.end() :]))


def _strings(body: dict, name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"'{name}' must be a list of strings")
    return value


def read_truncated(body: dict, n: int) -> list[bool | None]:
    """The body's ``truncated`` flags, one per item (all None when absent)."""
    value = body.get("truncated")
    if value is None:
        return [None] * n
    if not isinstance(value, list) or not all(v is None or isinstance(v, bool) for v in value):
        raise RequestError("'truncated' must be a list of true, false or null")
    if len(value) != n:
        raise RequestError(f"{len(value)} 'truncated' flags for {n} items")
    return value


def _read_pairs(body: dict) -> list[Item]:
    prompts = _strings(body, "prompts")
    responses = _strings(body, "responses")
    if responses is not None:
        if prompts is None or len(prompts) != len(responses):
            raise RequestError("'responses' needs 'prompts' of the same length")
        return [Item(user_text(p), strip_end(r)) for p, r in zip(prompts, responses, strict=True)]
    queries = _strings(body, "query")
    if queries is None:
        raise RequestError("the body needs 'query' (OpenRLHF) or 'prompts' and 'responses'")
    if prompts is not None and len(prompts) != len(queries):
        raise RequestError(f"{len(queries)} queries but {len(prompts)} prompts")
    return [split_query(q, prompts[i] if prompts else None) for i, q in enumerate(queries)]


def read_items(body: object) -> list[Item]:
    """The items of a ``/get_reward`` body: OpenRLHF's ``query`` form or rlaif's ``responses``,
    each with its ``truncated`` flag."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    items = _read_pairs(body)
    flags = read_truncated(body, len(items))
    return [replace(item, truncated=cut) for item, cut in zip(items, flags, strict=True)]


def read_group(body: object) -> tuple[str, list[str], list[bool | None]]:
    """The prompt, responses and ``truncated`` flags of a ``/group_reward`` body
    ``{"prompt", "responses", "truncated"}``."""
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        raise RequestError("the body must be {'prompt': str, 'responses': [str, ...]}")
    responses = _strings(body, "responses") or []
    if len(responses) < 2:
        raise RequestError("a group needs at least 2 responses")
    flags = read_truncated(body, len(responses))
    return user_text(body["prompt"]), [strip_end(r) for r in responses], flags
