"""The `ddx-omni` command line: serve in the foreground, write the OpenAPI document."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .core.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="ddx-omni: local LLM, live speech-to-text and the Responses API on one port.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML file (else ./config.toml, else "
                                                                    "~/.config/ddx-omni/config.toml)")]
HostOpt = Annotated[Optional[str], typer.Option(help="Interface to bind [server].host")]
PortOpt = Annotated[Optional[int], typer.Option(help="Port [server].port")]
LogLevelOpt = Annotated[Optional[str], typer.Option("--log-level", help="critical|error|warning|info|debug")]
RealOpt = Annotated[Optional[bool], typer.Option("--real/--mock", help="Serve a real MLX model, or the mock")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model id or path to load at start")]
SttEngineOpt = Annotated[Optional[str], typer.Option("--stt-engine", help="auto|parakeet|sphinx")]


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
    import uvicorn

    from .app import create_app
    from .core.logging import setup_logging

    settings = resolve_settings(config, host=host, port=port, log_level=log_level, real=real, model=model,
                                stt_engine=stt_engine)
    setup_logging(settings.server.log_level)
    uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port,
                log_config=None, log_level=settings.server.log_level, ws_max_size=16 * 1024 * 1024,
                timeout_graceful_shutdown=10)


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
