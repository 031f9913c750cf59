"""``nastk dashboard RUNS_DIR [--port P] [--host H]``: every run under a folder in optuna-dashboard
(see :mod:`nastk.dashboard`)."""
from __future__ import annotations

from nastk.options import Int


def register(subparsers) -> None:
    parser = subparsers.add_parser("dashboard", help="a web page of every run under a folder (searches, parallel "
                                   "searches, supernets as studies of epochs), served by optuna-dashboard")
    parser.add_argument("root", metavar="RUNS_DIR", nargs="?", default="runs", help="folder holding the runs "
                        "(default runs)")
    parser.add_argument("--port", type=Int(minimum=0, maximum=65535), default=8080,
                        help="port (default 8080; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine "
                        "only; the page has no login, so serve elsewhere only on a trusted network)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import time

    from nastk.dashboard import start_server, stop_server
    from nastk.log import LOGGER

    server, names, problems = start_server(args.root, args.host, args.port)
    for problem in problems:
        LOGGER.warning(f"nastk: skipped: {problem}")
    print(f"nastk dashboard: {len(names)} runs of {args.root} at http://{args.host}:{server.server_port}/ "
          f"(a snapshot taken now; Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(server)
