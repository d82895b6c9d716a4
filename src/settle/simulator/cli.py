"""``settle simulate processor``: serve a simulated card processor on 127.0.0.1."""

from __future__ import annotations

from typing import Annotated

import typer

from settle.simulator.config import SimulatorConfig

__all__ = ["simulate_app"]

simulate_app = typer.Typer(
    help="Simulators of outside parties, for tests and demos.", no_args_is_help=True
)


@simulate_app.command("processor")
def processor(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind")] = 9100,
    name: Annotated[str, typer.Option(help="The processor's name, [a-z0-9_]+")] = "sim",
    latency_ms: Annotated[float, typer.Option(help="Latency added to every call")] = 5.0,
    jitter_ms: Annotated[float, typer.Option(help="Up to this much more, at random")] = 0.0,
    failure_rate: Annotated[
        float, typer.Option(help="Chance of a 500 with nothing done, 0..1")
    ] = 0.0,
    timeout_rate: Annotated[
        float, typer.Option(help="Chance of holding a call like the timeout card, 0..1")
    ] = 0.0,
    hang_seconds: Annotated[
        float, typer.Option(help="How long a timeout holds a call before its 504")
    ] = 30.0,
    late_seconds: Annotated[
        float, typer.Option(help="How long a late success waits before answering")
    ] = 10.0,
    notify_url: Annotated[
        str | None, typer.Option(help="Where to POST signed notifications")
    ] = None,
    notify_secret: Annotated[
        str | None,
        typer.Option(help="whsec_… secret signing notifications", envvar="SIM_NOTIFY_SECRET"),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="Require Authorization: Bearer KEY", envvar="SIM_API_KEY"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of ids and injected faults")] = None,
) -> None:
    """Serve a simulated card processor (contract: docs/processor-simulator.md)."""
    import uvicorn

    from settle.simulator.app import create_simulator_app

    try:
        config = SimulatorConfig(
            name=name,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            failure_rate=failure_rate,
            timeout_rate=timeout_rate,
            hang_seconds=hang_seconds,
            late_seconds=late_seconds,
            notify_url=notify_url,
            notify_secret=notify_secret,
            api_key=api_key,
            seed=seed,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"processor simulator {name!r} on http://{host}:{port}", err=True)
    uvicorn.run(
        create_simulator_app(config),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        # Calls held by the timeout card must not hold up a shutdown for --hang-seconds.
        timeout_graceful_shutdown=1,
    )
