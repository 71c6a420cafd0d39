"""Human review of a run's least certain AI labels, in the browser (``rlaif review``), and the
merged preference file (``rlaif export``).

queue.py     the run's pairs as review items, most worth a human look first
decisions.py review decisions in the run's SQLite store
stats.py     agreement of the judge with the reviewer, estimated label flips
app.py       the web app (Starlette, plain HTML, a token on every route)
serve.py     the local socket and uvicorn
export.py    the preference file with human decisions overriding the AI's
"""
