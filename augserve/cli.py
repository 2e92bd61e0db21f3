"""Command line: ``augserve serve | preview | bench | pipelines``."""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE


def _serve(args: argparse.Namespace) -> int:
    print("augserve serve: the gRPC server is not built yet; this release ships the augmentation "
          "engine (augserve.Pipeline) only.", file=sys.stderr)
    return EXIT_UNAVAILABLE


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
    except (SpecError, ValueError, FileNotFoundError) as error:
        print(f"augserve {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
