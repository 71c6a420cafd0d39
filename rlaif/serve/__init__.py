"""``rlaif serve``: the judge as a reward service for the RL engines people run.

``openrlhf`` (OpenRLHF's request read into items), ``service`` (scoring on a bounded pool,
through the run store, with deadlines and counters), ``app`` (the HTTP routes), ``server``
(where it listens, the token). The rewards themselves are :mod:`rlaif.rewards`; the client
is :mod:`rlaif.remote`.
"""
