"""Local Hugging Face checkpoints through transformers: ``hf:DIR``, e.g. a trained policy.

Every checkpoint ``rlaif train`` writes is such a directory, so a trained policy can generate,
be judged, or judge, like any other model. Prompts are built with the checkpoint's own chat
template; choice log-probabilities are a full-vocabulary log-softmax at the last position.
The model runs on a CUDA GPU in bf16 where there is one (see :mod:`rlaif.backends.accelerator`),
else on the CPU in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rlaif.backends.base import (
    Backend,
    ChoiceScores,
    Generation,
    Messages,
    single_token_ids,
)
from rlaif.errors import BackendError

#: sampling filters at temperature > 0, as llama.cpp's chat completion uses by default
TOP_K = 40
TOP_P = 0.95


class TransformersBackend(Backend):
    """A causal LM checkpoint directory run in-process by transformers (GPU if any, else CPU)."""

    def __init__(self, spec: str, *, model_id: str | None = None) -> None:
        from rlaif.backends.accelerator import device, inference_dtype
        from rlaif.backends.checkpoints import load_tokenizer, resolve_checkpoint
        from rlaif.backends.llamacpp import _default_threads

        path = resolve_checkpoint(spec)
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as e:  # pragma: no cover - the 'train' extra
            raise BackendError(
                "the hf: backend needs the 'train' extra: pip install -c constraints.txt "
                "-e '.[train]'"
            ) from e
        self._torch = torch
        self.path = Path(path)
        self.model_id = model_id or spec
        torch.set_num_threads(_default_threads())
        self.tokenizer = load_tokenizer(self.path)
        if not self.tokenizer.chat_template:
            raise BackendError(f"{self.model_id}: the checkpoint's tokenizer has no chat template")
        try:
            self.model = AutoModelForCausalLM.from_pretrained(
                str(self.path), dtype=inference_dtype()
            ).to(device())
        except (OSError, ValueError) as e:
            raise BackendError(f"{self.model_id}: transformers cannot load it ({e})") from e
        self.model.eval()
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        self._choice_ids: dict[str, list[int]] = {}

    # -- tokens -----------------------------------------------------------------------------
    def prompt_tokens(self, messages: Messages) -> list[int]:
        """Token ids of chat messages plus the assistant header, from the chat template."""
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _ids_for(self, choice: str) -> list[int]:
        """Single-token spellings of a choice (``"A"`` and ``" A"``); error if there is none."""
        if choice not in self._choice_ids:
            self._choice_ids[choice] = single_token_ids(
                self.model_id,
                choice,
                lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"],
            )
        return self._choice_ids[choice]

    def _check_length(self, n: int, extra: int = 0) -> None:
        if self.max_positions and n + extra > self.max_positions:
            raise BackendError(
                f"{self.model_id}: prompt of {n} tokens (+{extra} to generate) exceeds the "
                f"context window of {self.max_positions}"
            )

    # -- the two abilities ------------------------------------------------------------------
    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        """Generate a reply: greedy at temperature 0, else seeded top-k/top-p sampling."""
        torch = self._torch
        tokens = self.prompt_tokens(messages)
        self._check_length(len(tokens), max_tokens)
        input_ids = torch.tensor([tokens], device=self.model.device)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_k": TOP_K, "top_p": TOP_P}
            if temperature > 0
            else {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
        )
        eos = self.tokenizer.eos_token_id
        # A private RNG state: the same seed gives the same sample whatever ran before.
        rng_devices = [] if self.model.device.type == "cpu" else [self.model.device]
        with torch.random.fork_rng(devices=rng_devices), torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_tokens,
                eos_token_id=eos,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        new = out[0, len(tokens) :].tolist()
        stopped = bool(new) and new[-1] == eos
        if stopped:
            new = new[:-1]
        return Generation(
            text=self.tokenizer.decode(new, skip_special_tokens=True).strip(),
            prompt_tokens=len(tokens),
            completion_tokens=len(new),
            finish_reason="stop" if stopped or len(new) < max_tokens else "length",
        )

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        """Log-probabilities (full-vocabulary softmax) of each choice as the reply's first token."""
        torch = self._torch
        tokens = self.prompt_tokens(messages)
        self._check_length(len(tokens))
        with torch.inference_mode():
            ids = torch.tensor([tokens], device=self.model.device)
            logits = self.model(input_ids=ids, logits_to_keep=1).logits
        # float64 on the CPU, whatever the model's device and dtype
        logprobs_all = torch.log_softmax(logits[0, -1].cpu().double(), dim=-1)
        logprobs: dict[str, float | None] = {}
        for choice in choices:
            ids = self._ids_for(choice)
            logprobs[choice] = float(torch.logsumexp(logprobs_all[ids], dim=0))
        return ChoiceScores(method="logprobs", logprobs=logprobs, prompt_tokens=len(tokens))

    def close(self) -> None:
        """Drop the model's weights."""
        self.model = None
