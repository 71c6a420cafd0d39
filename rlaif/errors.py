"""The library's exceptions: each message says what went wrong and what to do next."""


class RlaifError(Exception):
    """Base class of every error rlaif raises on purpose; the CLI turns it into exit code 1."""


class ModelSpecError(RlaifError):
    """A model string that names no backend, or names a file or server that is not there."""


class BackendError(RlaifError):
    """A backend failed in a way retrying will not fix (bad tokenizer, server refused)."""


class ConstitutionError(RlaifError):
    """A constitution file that cannot be used: unreadable, a missing field, a duplicate id."""


class InputError(RlaifError):
    """Input data (prompts, pairs) that cannot be read; the message names the file and line."""


class RunError(RlaifError):
    """A run directory that cannot be used for this run."""


class RuleError(RlaifError):
    """A programmatic judge that cannot be loaded, or whose function failed or returned junk."""


class ReviewServerError(RlaifError):
    """The review server cannot listen where it was asked to."""


class BudgetExceeded(RlaifError):
    """The next model call could take the run past ``--max-cost``; nothing was half-written."""


class ServeError(RlaifError):
    """The judge server cannot start as asked (address, port, token file)."""


class RemoteJudgeError(RlaifError):
    """A served judge that cannot be reached, refused the request, or answered nonsense."""
