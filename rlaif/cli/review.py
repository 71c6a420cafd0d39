"""``rlaif review`` and ``rlaif export``: review a run's AI labels by hand, export the result."""

from __future__ import annotations

import getpass

import click

from rlaif.cli import options as opt


def _default_reviewer() -> str:
    try:
        return getpass.getuser() or "reviewer"
    except (KeyError, OSError):
        return "reviewer"


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@opt.port(0, "Port to listen on (0: a free one).")
@opt.host("anything but 127.0.0.1 needs --allow-remote")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a --host other than 127.0.0.1 (the token is then the only protection).",
)
@click.option("--reviewer", default=None, help="Name stored with each decision (default: $USER).")
@click.option(
    "--blind", is_flag=True, help="Hide the AI judge's probability and rationale from the reviewer."
)
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
def review(run_dir, port, host, allow_remote, reviewer, blind, no_browser):
    """Review a finished run's least certain AI labels in the browser.

    Serves a local web app (the printed URL carries an access token; requests without it get
    403) showing the run's pairs, position-inconsistent and |p - 0.5| small first. Each
    decision (left, right, tie, skip, with a comment) is written at once to the run's
    store.sqlite. Stop with Ctrl-C; `rlaif export RUN_DIR --out FILE` writes the merged data.
    """
    import webbrowser

    try:
        from rlaif.review.app import ReviewSession, create_app
    except ImportError as e:
        raise click.ClickException(
            f"rlaif review needs the web app's packages ({e.name} is missing); "
            "install them with: pip install 'rlaif[server]'"
        ) from e
    from rlaif.review.serve import bind, new_token, serve, url_of

    session = ReviewSession(run_dir, reviewer or _default_reviewer(), blind=blind)
    try:
        sock = bind(host, port, allow_remote=allow_remote)
        token = new_token()
        url = url_of(sock, token)
        stats = session.stats()
        click.echo(
            f"Reviewing {run_dir}: {stats.items} pairs, {stats.reviewed} already reviewed, "
            f"as {session.reviewer}. Stop with Ctrl-C."
        )
        click.echo(f"Review page: {url}", nl=True)
        if not no_browser:
            webbrowser.open(url)
        serve(create_app(session, token), sock)
        stats = session.stats()
    finally:
        session.close()
    agreement = "-" if stats.agreement is None else f"{100 * stats.agreement:.0f}%"
    click.echo(
        f"Stopped. {stats.reviewed} of {stats.items} pairs reviewed; the judge agreed on "
        f"{stats.agree} of {stats.compared} ({agreement}). "
        f"Next: rlaif export {run_dir} --out FILE"
    )


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@opt.out("Preference file (JSONL) to write.")
@click.option(
    "--include-low-margin",
    is_flag=True,
    help="Also export the AI labels of low-margin pairs nobody reviewed.",
)
def export(run_dir, out, include_low_margin):
    """Write a run's preference file with human review decisions overriding AI labels.

    Every record gets `label_source`: ai, human, or "ai+human agree". Pairs a reviewer
    called a tie are left out (a preference file has no ties).
    """
    from rlaif.review.export import export_preferences

    result = export_preferences(run_dir, out, include_low_margin=include_low_margin)
    total = sum(result.counts.values())
    parts = ", ".join(f"{n} {source}" for source, n in result.counts.items())
    click.echo(
        f"{result.out}: {total} records ({parts}); {result.dropped_ties} human ties and "
        f"{result.left_out} unreviewed low-margin or unreadable pairs left out"
    )
