"""``--show-example``: a training example decoded from the token ids the model receives.

Chat templates are where training and inference most often part ways (a missing template, a
missing separator, a system prompt added on one side only), and the token ids are the only
place that shows it. Every ``rlaif train`` command can print its first example this way and
exit without training. Special tokens are kept; the marker ``[[response: NAME]]`` shows where
the prompt ends and the tokens the loss reads begin.
"""

from __future__ import annotations


def marker(name: str) -> str:
    """The text inserted where the response begins."""
    return f"[[response: {name}]]"


def decode(tokenizer, ids: list[int]) -> str:
    """Token ids as text, special tokens (the chat template's markers) included."""
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def pair_example(
    tokenizer, header: str, rows: dict[str, tuple[list[int], list[int] | None]]
) -> str:
    """Text showing each sequence of one example, with the response boundary marked.

    ``rows`` maps a name (``chosen``, ``rejected``) to (token ids, completion mask): the mask
    is 1 on the tokens the loss reads; None when the whole sequence is read (a reward model).
    """
    parts = [header]
    for name, (ids, mask) in rows.items():
        if mask is None:
            parts.append(f"=== {name}: {len(ids)} tokens, all read by the model ===")
            parts.append(decode(tokenizer, ids))
            continue
        start = mask.index(1) if 1 in mask else len(ids)
        n_response = sum(mask)
        parts.append(
            f"=== {name}: {len(ids)} tokens; the loss reads the {n_response} after "
            f"{marker(name)} ==="
        )
        parts.append(decode(tokenizer, ids[:start]) + marker(name) + decode(tokenizer, ids[start:]))
        if n_response == 0:
            parts.append(f"(no {name} token is left after truncation to --max-length)")
    return "\n".join(parts) + "\n"
