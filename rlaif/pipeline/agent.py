"""``RLAIFAgent``: the interface of the original project description, built on rlaif's parts.

agent = RLAIFAgent("smollm2", "smollm2", "default")
critique = agent.generate_critique(prompt, response)
pairs = agent.generate_preference_data(prompts, n_responses=2)
better = agent.improve_response(prompt, response, critique)
"""

from __future__ import annotations

from itertools import combinations

from rlaif.backends import Backend, load_backend
from rlaif.compare import Judge
from rlaif.constitution import Constitution, load_constitution
from rlaif.critique import Critique, critique, revise, rewrite
from rlaif.synth import sample_responses


class RLAIFAgent:
    """A policy (``base_model``), an AI judge (``critic_model``) and a constitution."""

    def __init__(
        self,
        base_model: str | Backend = "smollm2",
        critic_model: str | Backend = "smollm2",
        constitution: str | Constitution | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.policy = load_backend(base_model)
        self.critic = load_backend(critic_model)
        self.constitution = (
            constitution
            if isinstance(constitution, Constitution)
            else load_constitution(constitution)
        )
        self.seed = seed
        self.judge = Judge(self.critic, self.constitution, seed=seed)

    def generate_critique(self, prompt: str, response: str) -> Critique:
        """The critic's critique of ``response`` under one sampled principle."""
        return critique(self.critic, self.constitution, prompt, response, seed=self.seed)

    def generate_preference_data(self, prompts: list[str], n_responses: int = 2) -> list[dict]:
        """For each prompt, sample responses and label every pair with the judge.

        Returns TRL-style records (``prompt``, ``chosen``, ``rejected``, ``p_chosen``, ...);
        pairs whose judge reply could not be read are returned with ``chosen = None``.
        """
        records = []
        for prompt in prompts:
            responses = sample_responses(self.policy, prompt, n_responses, seed=self.seed)
            for ra, rb in combinations(responses, 2):
                a, b = ra.text, rb.text
                pref = self.judge.compare(prompt, a, b, truncated=(ra.truncated, rb.truncated))
                record = {"prompt": prompt, **pref.to_dict()}
                if pref.p_a is None:
                    record.update(chosen=None, rejected=None, p_chosen=None)
                elif pref.p_a >= 0.5:
                    record.update(chosen=a, rejected=b, p_chosen=pref.p_a)
                else:
                    record.update(chosen=b, rejected=a, p_chosen=1.0 - pref.p_a)
                records.append(record)
        return records

    def improve_response(self, prompt: str, response: str, critique: Critique | None = None) -> str:
        """A revision of ``response``; critiques it first when no critique is given."""
        if critique is None:
            return revise(
                self.policy,
                self.constitution,
                prompt,
                response,
                rounds=1,
                seed=self.seed,
                critic=self.critic,
            ).final
        principle = self.constitution.get(critique.principle_id)
        text, _ = rewrite(self.policy, principle, prompt, response, critique.text)
        return text or response
