"""The `ddx-omni` command line: serve in the foreground; start, stop, restart and inspect a detached server."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from . import lifecycle
from .core.settings import Settings, SettingsError, find_config_file, load_settings
from .lifecycle import EXIT_CODE_MEANINGS, ExitCode, LifecycleError

EXIT_CODES_HELP = "Exit codes:\n\n" + "\n\n".join(f"{int(code)}  {text}" for code, text in EXIT_CODE_MEANINGS.items())

app = typer.Typer(help="ddx-omni: local LLM, live speech-to-text and the Responses API on one port.",
                  epilog=EXIT_CODES_HELP, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file (else ./config.toml, else "
                                                                    "~/.config/ddx-omni/config.toml)")]
HostOpt = Annotated[str | None, typer.Option(help="Interface to bind (server.host)")]
PortOpt = Annotated[int | None, typer.Option(help="Port (server.port)")]
LogLevelOpt = Annotated[str | None, typer.Option("--log-level", help="critical|error|warning|info|debug")]
RealOpt = Annotated[bool | None, typer.Option("--real/--mock", help="Serve a real MLX model, or the mock")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model id or path to load at start")]
SttEngineOpt = Annotated[str | None, typer.Option("--stt-engine", help="auto|parakeet|sphinx")]


def resolve_settings(config: Path | None, **flags: Any) -> Settings:
    """CLI flags > env > TOML > defaults; a bad setting ends the command with its message (exit 2)."""
    keys = {"host": "server.host", "port": "server.port", "log_level": "server.log_level",
            "real": "llm.use_real_model", "model": "llm.model", "stt_engine": "stt.engine"}
    try:
        return load_settings(config, {keys[k]: v for k, v in flags.items() if v is not None})
    except SettingsError as exc:
        typer.echo(f"Error: invalid configuration.\n{exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None, log_level: LogLevelOpt = None,
          real: RealOpt = None, model: ModelOpt = None, stt_engine: SttEngineOpt = None) -> None:
    """Run the server in the foreground (Ctrl-C stops it)."""
    from .app import create_app
    from .core.logging import setup_logging
    from .llm.compute import prefer_openblas

    settings = resolve_settings(config, host=host, port=port, log_level=log_level, real=real, model=model,
                                stt_engine=stt_engine)
    prefer_openblas(settings.llm.cpu_blas)  # may re-execute this command with OpenBLAS preloaded (Linux)
    setup_logging(settings.server.log_level)
    app = create_app(settings)
    # What lives as long as the server (modules, routes, the app) leaves the collector's view: a full collection
    # had to walk all of it, a 0.2–0.6 s pause under load that set the p99 of every request. Here, once per
    # process, not in the app's lifespan: frozen objects are never collected, so a process that builds many apps
    # (the tests) would keep every stopped one.
    gc.collect()
    gc.freeze()
    lifecycle.run_server(app, settings.server.host, settings.server.port, settings.server.log_level)


TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for /health (and the "
                                                                     "model load) before giving up")]
console = Console(highlight=False, soft_wrap=True)  # soft wrap: paths and commands stay copyable
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(exc: LifecycleError) -> typer.Exit:
    err_console.print(exc.render(), markup=False)
    return typer.Exit(int(exc.code))


def _start_flags(log_level: str | None, real: bool | None, model: str | None, stt_engine: str | None) -> dict[str, Any]:
    flags = {"log_level": log_level, "real": real, "model": model, "stt_engine": stt_engine}
    return {name: value for name, value in flags.items() if value is not None}


def _start_detached(config: Path | None, flags: dict[str, Any], host: str | None, port: int | None,
                    timeout: float) -> None:
    settings = resolve_settings(config, host=host, port=port, **flags)
    config_file = find_config_file(config)
    try:
        with console.status("Starting ddx-omni…") as spinner:
            result = lifecycle.start(settings.server.host, settings.server.port,
                                     config_file.resolve() if config_file else None, flags, timeout,
                                     progress=lambda line: spinner.update(line))
    except LifecycleError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err_console.print("Interrupted while waiting: the server keeps starting in the background.\n"
                          "See it: ddx-omni status    Abandon it: ddx-omni stop", markup=False)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    for note in result.notes:
        console.print(note, style="yellow", markup=False)
    record = result.record
    console.print(f"ddx-omni is running — PID {record.pid}, ready in {result.elapsed_s:.1f} s", style="green",
                  markup=False)
    lines = [f"URL:          {record.url}   (welcome page: {record.url}/)",
             f"Health:       {result.health.get('status')}"]
    lines += [f"Not ready:    {problem}" for problem in lifecycle.component_problems(result.health)]
    lines += [f"Log:          {record.log}", "Stop it with: ddx-omni stop"]
    for line in lines:
        console.print("  " + line, style="yellow" if line.startswith("Not ready") else None, markup=False)


@app.command(epilog=EXIT_CODES_HELP)
def start(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None, log_level: LogLevelOpt = None,
          real: RealOpt = None, model: ModelOpt = None, stt_engine: SttEngineOpt = None,
          timeout: TimeoutOpt = lifecycle.START_TIMEOUT_S) -> None:
    """Start the server in the background, wait until it is ready, print its URL."""
    _start_detached(config, _start_flags(log_level, real, model, stt_engine), host, port, timeout)


StopTimeoutOpt = Annotated[float, typer.Option("--timeout", min=0, help="Seconds of graceful shutdown "
                                                                      "(SIGTERM) before SIGKILL")]
RestartStopTimeoutOpt = Annotated[float, typer.Option("--stop-timeout", min=0,
                                                    help="Graceful-stop seconds before SIGKILL")]
ForceOpt = Annotated[bool, typer.Option("--force", help="SIGKILL at once, without a graceful shutdown")]


def _stop(force: bool, timeout: float) -> lifecycle.StopResult:
    with console.status(f"Stopping ddx-omni (in-flight requests get up to {timeout:g} s)…"):
        return lifecycle.stop(force=force, timeout=timeout)


@app.command(epilog=EXIT_CODES_HELP)
def stop(force: ForceOpt = False, timeout: StopTimeoutOpt = lifecycle.STOP_TIMEOUT_S) -> None:
    """Stop the background server: SIGTERM, then SIGKILL after --timeout (or at once with --force)."""
    try:
        result = _stop(force, timeout)
    except LifecycleError as exc:
        raise _fail(exc) from None
    how = "gracefully" if result.graceful else ("killed (--force)" if force else
                                                f"killed after {timeout:g} s without exiting")
    console.print(f"ddx-omni stopped (PID {result.pid}, {how}, {result.elapsed_s:.1f} s).", markup=False)
    if result.leftovers:
        console.print(f"Ended {result.leftovers} helper process(es) the server left running in its process group.",
                      style="yellow")


@app.command(epilog=EXIT_CODES_HELP)
def restart(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None, log_level: LogLevelOpt = None,
            real: RealOpt = None, model: ModelOpt = None, stt_engine: SttEngineOpt = None,
            timeout: TimeoutOpt = lifecycle.START_TIMEOUT_S,
            stop_timeout: RestartStopTimeoutOpt = lifecycle.STOP_TIMEOUT_S) -> None:
    """Stop the server (if running) and start it again with the same options; options given here replace them."""
    lifecycle.discard_stale()
    previous = lifecycle.read_record()
    flags = {**(previous.flags if previous else {}), **_start_flags(log_level, real, model, stt_engine)}
    if config is None and previous is not None and previous.config:
        config = Path(previous.config)
    if previous is not None and previous.port:
        host, port = host or previous.host, port or previous.port
    if previous is not None:
        try:
            _stop(False, stop_timeout)
        except LifecycleError as exc:
            if exc.code != ExitCode.NOT_RUNNING:
                raise _fail(exc) from None
    _start_detached(config, flags, host, port, timeout)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    return " ".join(parts + [f"{secs} s"]) if not days else " ".join(parts)


def _configured_url() -> str | None:
    """Where the settings (env, ./config.toml…) say a server listens; None when they do not resolve."""
    try:
        settings = load_settings()
    except SettingsError:
        return None
    return lifecycle.base_url(settings.server.host, settings.server.port)


@app.command(epilog=EXIT_CODES_HELP)
def status(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False) -> None:
    """Show whether the background server runs: PID, URL, uptime, health, model, STT engine."""
    code, info = lifecycle.status(configured_url=_configured_url())
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        raise typer.Exit(int(code))
    if info.get("stale_pid_file"):
        console.print(info["stale_pid_file"], style="yellow", markup=False)
    if not info["running"]:
        console.print(f"ddx-omni is not running (no PID file at {info['pid_file']}).", markup=False)
        if info.get("unmanaged"):
            url = info["unmanaged"]["url"]
            console.print(f"But a ddx-omni server not started by `ddx-omni start` answers at {url} "
                          f"(health {info['unmanaged']['health']}): started with `ddx-omni serve`? Stop it where it "
                          f"runs (Ctrl-C).", style="yellow", markup=False)
        raise typer.Exit(int(code))
    colour = {"ok": "green", "loading": "yellow"}.get(str(info["health"]), "red")
    model = f"{info['model']} ({info['model_state']}, {info.get('llm_mode') or '?'} mode)" if info["model"] else "-"
    rows = [("PID", str(info["pid"])), ("URL", f"{info['url']}   (welcome page: {info['url']}/)"),
            ("Uptime", _duration(info["uptime_s"])), ("Health", f"[{colour}]{escape(str(info['health']))}[/{colour}]"),
            ("Version", str(info.get("version") or "-")), ("Model", model),
            ("STT engine", f"{info['stt_engine'] or '-'} ({info.get('stt_state') or '?'})"),
            ("Log", info["log_file"])] + [("Not ready", problem) for problem in info.get("problems", [])]
    console.print("[green]●[/green] ddx-omni is running")
    for label, value in rows:
        console.print(f"  {label:<11} {value if label == 'Health' else escape(value)}")
    raise typer.Exit(int(code))


def openapi_document() -> dict[str, Any]:
    from .app import create_app

    return create_app(Settings()).openapi()


@app.command()
def openapi(output: Annotated[Path, typer.Option("--output", "-o")] = Path("openapi/openapi.json")) -> None:
    """Write the OpenAPI document (the committed copy is checked against the app by the tests)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
    typer.echo(f"wrote {output}")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
