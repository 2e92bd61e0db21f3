"""Command line: ``augserve serve | preview | bench | pipelines``."""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_USAGE = 2


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from augserve.server.app import AugmentServer
    from augserve.server.config import ServerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fields = ServerConfig.__dataclass_fields__
    config = ServerConfig(**{name: getattr(args, name) for name in fields if hasattr(args, name)})
    asyncio.run(AugmentServer(config).serve_forever())
    return 0


def _add_serve_flags(serve: argparse.ArgumentParser) -> None:
    from augserve.server.config import ServerConfig, env_default

    defaults = ServerConfig()
    flags = [
        ("host", str, "address to listen on"),
        ("port", int, "gRPC port (0: any free port)"),
        ("metrics-port", int, "Prometheus metrics HTTP port (0: off)"),
        ("device", str, "auto, cpu or cuda:N"),
        ("max-batch", int, "samples merged into one device batch"),
        ("max-delay-ms", float, "how long a request may wait to be merged"),
        ("max-queue", int, "queued samples before RESOURCE_EXHAUSTED"),
        ("max-message-bytes", int, "largest gRPC message"),
        ("max-samples", int, "samples per request"),
        ("max-pixels", int, "H*W per sample"),
        ("grace-seconds", float, "time in-flight work gets to finish on SIGTERM"),
        ("drain-delay-seconds", float, "on SIGTERM, report NOT_SERVING and refuse new work this long first"),
        ("token", str, "require 'authorization: Bearer TOKEN'"),
        ("tls-cert", str, "server certificate (PEM)"),
        ("tls-key", str, "server private key (PEM)"),
        ("tls-ca", str, "client CA (PEM): require client certificates"),
        ("datasets-file", str, "YAML file declaring datasets"),
    ]
    for flag, kind, text in flags:
        name = flag.replace("-", "_")
        default = env_default(name, getattr(defaults, name))
        serve.add_argument(f"--{flag}", dest=name, type=kind, default=default,
                           help=f"{text} (default: %(default)s; env AUGSERVE_{name.upper()})")


def _pipelines(args: argparse.Namespace) -> int:
    from augserve.presets import PRESETS

    if args.json:
        print(json.dumps({name: steps for name, (_, steps) in PRESETS.items()}, indent=2))
        return 0
    width = max(len(name) for name in PRESETS)
    for name, (description, _) in PRESETS.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from augserve.preview import write_preview

    path = write_preview(args.pipeline, args.out, images_dir=args.images, dataset=args.dataset,
                         versions=args.versions, size=args.size, seed=args.seed)
    print(f"wrote {path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from augserve.bench import run_bench

    run_bench(batch=args.batch, size=args.size, repeats=args.repeats, device=args.device, out=args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="augserve", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC augmentation server")
    _add_serve_flags(serve)
    serve.set_defaults(func=_serve)

    pipelines = commands.add_parser("pipelines", help="list the preset pipelines")
    pipelines.add_argument("--json", action="store_true", help="print the presets' steps as JSON")
    pipelines.set_defaults(func=_pipelines)

    preview = commands.add_parser("preview", help="write a PNG grid of originals and augmented versions")
    preview.add_argument("--pipeline", default=os.environ.get("AUGSERVE_PIPELINE", "imagenet-randaug"),
                         help="preset, timm string, JSON/YAML text or @file (default: %(default)s; "
                              "env AUGSERVE_PIPELINE)")
    preview.add_argument("--images", help="folder of images (default: scikit-image's sample photos)")
    preview.add_argument("--dataset", default="gunpoint",
                         help="UCR/UEA dataset shipped with sktime, for time-series pipelines (default: %(default)s)")
    preview.add_argument("--out", default="preview.png", help="output PNG (default: %(default)s)")
    preview.add_argument("--versions", type=int, default=5, help="augmented versions per image")
    preview.add_argument("--size", type=int, default=256, help="side the originals are resized to")
    preview.add_argument("--seed", type=int, default=0)
    preview.set_defaults(func=_preview)

    bench = commands.add_parser("bench", help="throughput against torchvision, kornia and DALI")
    bench.add_argument("--batch", type=int, default=64)
    bench.add_argument("--size", type=int, default=224)
    bench.add_argument("--repeats", type=int, default=15, help="timed batches per engine")
    bench.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cpu or cuda (default: %(default)s)")
    bench.add_argument("--out", help="also write the table to this Markdown file")
    bench.set_defaults(func=_bench)
    return parser


def _version() -> str:
    from augserve import __version__

    return __version__


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from augserve.runtime import keep_freed_memory
    from augserve.spec import SpecError

    keep_freed_memory()
    try:
        return args.func(args)
    except (SpecError, ValueError, OSError) as error:
        print(f"augserve {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
