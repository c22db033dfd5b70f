"""`mnistlab serve`: the local web app over the runs folder (see docs/serve.md)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from mnistlab.commands import add_io_args

__all__ = ["serve_args", "cmd_serve", "is_loopback", "serve_url", "EXPOSED_WARNING"]

EXPOSED_WARNING = ("warning: --host {host} is not a loopback address: anyone who can reach this "
                   "machine on the network can read every run in {root}")


def serve_args(p: argparse.ArgumentParser) -> None:
    add_io_args(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--reports", action="append", default=[], metavar="DIR",
                   help="a folder holding a report.html (`mnistlab report -o DIR`) to show; "
                        "repeatable (default: ./report when it exists)")
    p.add_argument("--open", action="store_true", help="open the app in the web browser")


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - only for display
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def cmd_serve(args: argparse.Namespace) -> int:
    from mnistlab.errors import ConfigError, MnistlabError
    from mnistlab.rundir.directory import runs_root

    try:
        import uvicorn

        from mnistlab.serve.app import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        raise MnistlabError(f"mnistlab serve needs the `serve` extra ({exc.name} is missing); "
                            "install it with: pip install 'mnistlab[serve]'") from None
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be an int in [1, 65535]; got {args.port}")
    root = runs_root(args.runs_dir)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: is a file, not a runs folder; pass --runs-dir to a folder")
    reports = [Path(r) for r in args.reports] or [p for p in (Path("report"),)
                                                   if (p / "report.html").is_file()]
    local = is_loopback(args.host)
    allowed = [*LOOPBACK_HOSTS, args.host] if local else None
    app = create_app(root, reports, args.data_dir, allowed_hosts=allowed, torch_threads=1)
    url = serve_url(args.host, args.port)
    if not local:
        print(EXPOSED_WARNING.format(host=args.host, root=root.resolve()), file=sys.stderr)
    sock = _bind(args.host, args.port)  # before printing the URL: a busy port is one line
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    if args.open:
        _open_when_started(server, url)
    print(f"mnistlab serve: {root} at {url} (Ctrl-C stops)", flush=True)
    with sock:
        server.run(sockets=[sock])
    return 0


def _bind(host: str, port: int):
    """A listening socket on (host, port), or one line saying why there cannot be one."""
    import socket

    from mnistlab.errors import MnistlabError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        raise MnistlabError(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); "
                            "pass another --port or --host") from None
    return sock


def _open_when_started(server, url: str) -> None:
    """Open the browser once the server accepts connections (a thread waits for it)."""
    import threading
    import time
    import webbrowser

    def wait_then_open() -> None:
        for _ in range(200):
            if server.started:
                webbrowser.open(url)
                return
            time.sleep(0.05)

    threading.Thread(target=wait_then_open, daemon=True).start()
