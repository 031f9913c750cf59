"""``nastk dashboard RUNS_DIR``: every run under a folder in one web page, served by optuna-dashboard.

Every run is one study of an in-memory optuna storage built by :mod:`nastk.optuna_view` when the
server starts: a sequential search through its optuna view (trials built from nastk's journal), a
parallel search as a copy of its own optuna study, a one-shot run (supernet, staged, few-shot,
DARTS-PT) as a study of epochs whose history plot is its training curve. The storage is a snapshot:
runs that progress afterwards are seen after a restart (the run folders are never written).

optuna-dashboard is the optional extra ``dashboard`` (``pip install 'nastk[dashboard]'``). The
server is a standard-library WSGI server on ``host`` (default 127.0.0.1: this machine only).
"""
from __future__ import annotations

import threading
from typing import List, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from nastk.errors import ConfigError, RunError


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # no line per request on stderr
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):  # a browser opens several connections at once
        thread = threading.Thread(target=self._handle, args=(request, client_address), daemon=True)
        thread.start()

    def _handle(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def dashboard_app(root):
    """The optuna-dashboard WSGI application over every run under ``root``; returns (app, study names,
    lines for the runs that could not be shown)."""
    try:
        import optuna_dashboard
    except ModuleNotFoundError:
        raise ConfigError("nastk dashboard needs optuna-dashboard (pip install 'nastk[dashboard]')") from None
    from nastk.optuna_view import view_storage

    storage, names, problems = view_storage(root)
    if not names:
        why = f": {problems[0]}" if problems else ""
        raise RunError(f"no run under {root} to show{why}")
    return optuna_dashboard.wsgi(storage), names, problems


def start_server(root, host: str = "127.0.0.1", port: int = 8080) -> Tuple[WSGIServer, List[str], List[str]]:
    """Serve the dashboard of ``root`` on ``host:port`` (0: any free port) from a background thread;
    returns the server (``server.server_port``; stop it with :func:`stop_server`), the study names
    and the problem lines."""
    app, names, problems = dashboard_app(root)
    try:
        server = make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as error:
        raise ConfigError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
    thread = threading.Thread(target=server.serve_forever, name="nastk-dashboard", daemon=True)
    thread.start()
    server.nastk_thread = thread  # type: ignore[attr-defined]
    return server, names, problems


def stop_server(server: WSGIServer, timeout_s: float = 5.0) -> None:
    """Stop a server of :func:`start_server` and wait (at most ``timeout_s``) for its thread."""
    server.shutdown()
    server.server_close()
    thread: Optional[threading.Thread] = getattr(server, "nastk_thread", None)
    if thread is not None:
        thread.join(timeout_s)
