"""`mlops`: the developer CLI (demo, local serve)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops", description="Serverless MLOps platform: local tools")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the whole loop locally on embedded moto")
    demo.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    local = commands.add_parser("local", help="local runtime")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    serve = local_commands.add_parser("serve", help="moto server + the platform + the scoring API on 127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--json", action="store_true", help="first stdout line: JSON with the endpoints")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(as_json=args.json)
    if args.command == "local" and args.local_command == "serve":
        from .serve import main as serve_main

        return serve_main(port=args.port, as_json=args.json)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
