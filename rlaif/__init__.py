"""rlaif: Reinforcement Learning from AI Feedback, end to end.

from rlaif import load_backend, load_constitution, Judge, critique, revise, generate

judge = Judge(load_backend("smollm2"), load_constitution("default"))
pref = judge.compare("What is 2+2?", "4", "5")   # pref.p_a: probability that A is better
"""

from rlaif._version import __version__
from rlaif.backends import Backend, load_backend
from rlaif.compare import Judge, Preference
from rlaif.constitution import Constitution, Principle, load_constitution
from rlaif.critique import Critique, Revision, critique, revise
from rlaif.errors import RlaifError
from rlaif.pipeline.agent import RLAIFAgent
from rlaif.remote import remote_reward
from rlaif.synth import generate

__all__ = [
    "Backend",
    "Constitution",
    "Critique",
    "Judge",
    "Preference",
    "Principle",
    "RLAIFAgent",
    "Revision",
    "RlaifError",
    "__version__",
    "compare",
    "critique",
    "generate",
    "load_backend",
    "load_constitution",
    "remote_reward",
    "revise",
]


def compare(
    judge: str | Backend,
    prompt: str,
    a: str,
    b: str,
    *,
    constitution: str | Constitution | None = None,
    seed: int = 0,
    mode: str = "pairwise",
    cot: bool = False,
) -> Preference:
    """p(A better) for one pair, asked in both orders (see :class:`rlaif.compare.Judge`)."""
    if not isinstance(constitution, Constitution):
        constitution = load_constitution(constitution)
    return Judge(load_backend(judge), constitution, seed=seed, mode=mode, cot=cot).compare(
        prompt, a, b
    )
