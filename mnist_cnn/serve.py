"""``python -m mnist_cnn.serve``: serve a model over HTTP, with a drawing page at ``/`` and the API at ``/predict``.

Bad options, a missing checkpoint, a port in use or a missing extra end the command with one ``error:`` line
before anything is served. The port is listened on before the model loads, so that a second server on the same
port fails at once. SIGTERM or Ctrl+C stops it after the requests in flight are answered, status 0.
Needs the ``serve`` extra (``pip install "mnist_cnn[serve]"``), which holds the ``export`` extra of its default
backend, onnx.
"""

from __future__ import annotations

import socket

from omegaconf import DictConfig

from mnist_cnn.cli import hydra_command
from mnist_cnn.config import ServeConfig, validate
from mnist_cnn.errors import ConfigError, missing_extra
from mnist_cnn.weights.manifest import most_accurate
from mnist_cnn.weights.resolve import resolve_checkpoint

WILDCARD_HOSTS = ("0.0.0.0", "::")


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (0: any free port), or a ``ConfigError`` saying why it cannot be.

    It listens right after binding: SO_REUSEADDR lets two sockets bind one port while neither listens, and uvloop
    ignores the failed ``listen()`` of the second, which would then serve nothing."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen()
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({error.strerror or error}): choose another port=, or port=0 for any "
            "free one"
        ) from None
    return listening


@hydra_command("serve")
def main(cfg: DictConfig) -> None:
    config: ServeConfig = validate(cfg)
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (FastAPI's form parser)
        import swagger_ui_bundle  # noqa: F401  (the /docs page's scripts)
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise missing_extra("python -m mnist_cnn.serve", error) from None
    if config.backend == "onnx":
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
        except ImportError as error:
            raise missing_extra("backend=onnx (the default; or backend=torch)", error) from None
    if config.host in WILDCARD_HOSTS and not config.allowed_hosts:
        raise ConfigError(
            f"host={config.host} answers for any name of this machine: list the names clients use in allowed_hosts, "
            "e.g. allowed_hosts=[digits.example.org,192.168.1.20], or allowed_hosts=['*'] to answer for any name"
        )
    model = config.ckpt_path or most_accurate()
    checkpoint = resolve_checkpoint(model)
    listening = listen(config.host, config.port)
    from mnist_cnn.inference.backends import load_classifier  # torch: only once there is work
    from mnist_cnn.inference.classify import uncertainty_threshold
    from mnist_cnn.serving.server import create_app, run
    from mnist_cnn.weights.checkpoints import load_network

    network = load_network(checkpoint)
    classifier = load_classifier(network, config.backend, config.threads)
    app = create_app(classifier, config, model, uncertainty_threshold(network))
    host, port = listening.getsockname()[:2]
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    print(f"serving {model} ({config.backend}) at {address}/ (API docs: {address}/docs)", flush=True)
    run(app, listening, config)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
