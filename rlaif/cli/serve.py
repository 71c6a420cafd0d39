"""``rlaif serve``: the judge as an HTTP reward service (OpenRLHF's remote reward model form)."""

from __future__ import annotations

import click

from rlaif.cli import options as opt

SERVE = opt.Settings("rlaif.serve.service", "ServeSettings")


@click.command()
@opt.model("--judge", SERVE, rules=True)
@opt.constitution(SERVE, why="principles and checks the judge rates by")
@SERVE.option(
    "out",
    help="Directory of the run store (store.sqlite): every model call is kept "
    "there, so a repeated request or a restarted server makes no model call.",
)
@opt.host("any non-loopback address needs --token-file")
@opt.port(5000, "Port (0: a free one; the address is printed).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the access token (one line): required as 'Authorization: "
    "Bearer TOKEN' or '?token=TOKEN' on every route but /health.",
)
@SERVE.option(
    "concurrency",
    type=opt.AT_LEAST_1,
    help="Items scored at once; an in-process model still takes one call at a time.",
)
@SERVE.option(
    "timeout",
    type=opt.ABOVE_0,
    help="Seconds a request may take; items not scored by then are listed as failed.",
)
@SERVE.option(
    "failed_reward",
    type=float,
    help="Reward given to a failed item (it is listed in 'failed' either way); "
    "default null, which makes a client that expects numbers stop loudly.",
)
@SERVE.option(
    "max_body",
    type=click.IntRange(min=1024),
    help="Largest request body in bytes; larger ones get HTTP 413.",
)
@opt.seed(SERVE, help="Seeds the principle sampled per prompt.")
def serve(host, port, token_file, **options):
    """Serve the judge over HTTP as a reward for RL engines (OpenRLHF, verl, TRL).

    POST /get_reward takes OpenRLHF's {"query", "prompts", "labels"} (or {"prompts",
    "responses"}) and answers {"rewards", "scores", "failed"}: each response's pointwise reward
    under the constitution. POST /group_reward takes {"prompt", "responses"} and rewards each
    response by its mean probability of beating the others, pairs judged in both orders.
    GET /health, GET /metrics (counters). Stop with Ctrl-C.
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise click.ClickException(
            f"rlaif serve needs the web server's packages ({e.name} is missing); "
            "install them with: pip install 'rlaif[server]'"
        ) from e
    from rlaif.constitution import load_constitution
    from rlaif.serve.app import create_app
    from rlaif.serve.server import bind, read_token, run
    from rlaif.serve.service import JudgeService

    settings = opt.settings_from(SERVE, **options)
    token = read_token(token_file, host)
    if not settings.judge.strip().startswith(("rule:", "python:")):
        from rlaif.backends import check_judge_spec

        check_judge_spec(settings.judge)
    constitution = load_constitution(settings.constitution)
    sock = bind(host, port)
    service = JudgeService(settings, constitution)
    try:
        bound_host, bound_port = sock.getsockname()[:2]
        click.echo(
            f"rlaif serve: judge {service.judge.model_id}, constitution {constitution.name} "
            f"({constitution.hash}), store {settings.out}; listening on "
            f"http://{bound_host}:{bound_port} ({'token required' if token else 'no token'}). "
            "Stop with Ctrl-C.",
            err=True,
        )
        run(create_app(service, token), sock)
    finally:
        metrics = service.metrics()
        service.close()
    click.echo(
        f"served {metrics['requests']} requests, {metrics['items']} items "
        f"({metrics['failed_items']} failed), {metrics['model_calls']} model calls, "
        f"{metrics['cache_hits']} answered from the store",
        err=True,
    )
