"""The Code Manager process of one server: `python -m cmhost.engines.code_manager --dir
<server dir>/code-manager --host H --port P --cert C --key K`, with a JSON object on stdin:
{"remote": ..., "token_sha256": ..., "private_key": ... (optional)}.

The private key and the token's digest come through stdin, which the supervisor closes after
writing them, so they appear in no argv or environment; the key stays in this process's
memory and is on disk (0600) only while git runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from cmhost.engines.code_manager.api import CodeManagerApp, CodeManagerServer, tls_context
from cmhost.engines.code_manager.deploys import DeployQueue
from cmhost.engines.r10k import CodeDeployer, remove_keys

log = logging.getLogger("cmhost.code_manager")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cmhost.engines.code_manager")
    parser.add_argument("--dir", required=True, type=Path,
                        help="the server's code-manager directory (in its engine directory)")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--cert", required=True, help="the server's certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    return parser.parse_args(argv)


def _settings() -> dict[str, str]:
    raw = sys.stdin.buffer.read()
    sys.stdin.close()
    settings = json.loads(raw or b"{}")
    if not isinstance(settings, dict) or not all(
            isinstance(settings.get(k), str) and settings.get(k)
            for k in ("remote", "token_sha256")):
        raise SystemExit("code-manager: stdin must hold a JSON object with remote and "
                         "token_sha256")
    return settings


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    root = args.dir.resolve().parent
    remove_keys(root)  # of a deployment killed with this process's predecessor
    deployer = CodeDeployer(root, settings["remote"], settings.get("private_key") or None)
    deploys = DeployQueue(deployer, root)
    server = CodeManagerServer(args.host, args.port,
                               CodeManagerApp(deploys, settings["token_sha256"]),
                               tls_context(args.cert, args.key))
    del settings
    signal.signal(signal.SIGTERM, _stop)
    deploys.start()
    log.info("Code Manager of %s listening on %s:%s", root.name, args.host, args.port)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        deploys.stop()
        deployer.cancel()
        server.server_close()
        remove_keys(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
