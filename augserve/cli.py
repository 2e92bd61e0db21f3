"""Command line: augserve serve | health | pipelines | preview | datasets | train | bench | device-counts."""

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
        ("shared-epoch-bytes", int, "answers kept for streams of the same served epoch, computed once for all "
                                    "of them (0: no sharing)"),
        ("decoded-window-bytes", int, "decoded images of served files kept for other streams that read the same "
                                      "files with other pipelines or seeds, each decoded once (0: no sharing)"),
        ("threads", int, "CPU threads for the pipelines (0: the usable CPUs other processes leave free)"),
        ("decode-ahead", str, "decode encoded images as they arrive, beside the device's work: on, off, "
                              "or auto (on when the device is an accelerator)"),
        ("cuda-graphs", str, "on CUDA, capture each pipeline, batch shape and dtype as a CUDA graph on first use "
                             "and replay it: on or off"),
        ("grace-seconds", float, "time in-flight work gets to finish on SIGTERM"),
        ("drain-delay-seconds", float, "on SIGTERM, report NOT_SERVING and refuse new work this long first"),
        ("token", str, "require 'authorization: Bearer TOKEN'"),
        ("tls-cert", str, "server certificate (PEM)"),
        ("tls-key", str, "server private key (PEM)"),
        ("tls-ca", str, "client CA (PEM): require client certificates"),
        ("config", str, "YAML file naming pipelines and datasets to serve"),
    ]
    for flag, kind, text in flags:
        name = flag.replace("-", "_")
        default = env_default(name, getattr(defaults, name))
        serve.add_argument(f"--{flag}", dest=name, type=kind, default=default,
                           help=f"{text} (default: %(default)s; env AUGSERVE_{name.upper()})")
    serve.add_argument("--translate", action="store_true", default=env_default("translate", defaults.translate),
                       help="back_translation: translate clients' sentences that no served text dataset's paraphrase "
                            "file holds, with apertium (100 to 200 sentences a second; default: off, such a "
                            "sentence is refused; env AUGSERVE_TRANSLATE=1)")


def _health(args: argparse.Namespace) -> int:
    """Exit 0 when the server's health service says SERVING, 1 otherwise (for probes and HEALTHCHECK); with
    ``--wait``, keep asking until it does or the seconds are up (a job that starts beside its server)."""
    import pathlib
    import time

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from augserve.transport import RECONNECT

    options = list(RECONNECT)  # a server coming up is found within seconds (gRPC's own backoff grows to 2 min)
    if args.tls_ca:
        credentials = grpc.ssl_channel_credentials(pathlib.Path(args.tls_ca).read_bytes())
        options += [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
        channel = grpc.secure_channel(args.target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(args.target, options=options)
    until = time.monotonic() + args.wait
    with channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        while True:  # asks fail fast, so the last answer says why (connection refused, NOT_SERVING while warming up)
            try:
                reply = check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
                status, failed = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status), None
            except grpc.RpcError as error:
                status, failed = None, f"{error.code().name}: {error.details()}"
            if status == "SERVING" or time.monotonic() >= until:
                break
            time.sleep(max(0.0, min(0.25, until - time.monotonic())))
    waited = f" (after waiting {args.wait:g} s)" if args.wait and status != "SERVING" else ""
    if failed:
        print(f"{args.target}: {failed}{waited}", file=sys.stderr)
        return 1
    print(f"{args.target}: {status}{waited}")
    return 0 if status == "SERVING" else 1


def _train(args: argparse.Namespace) -> int:
    datasets = [name.strip().lower() for name in args.dataset.split(",") if name.strip()]
    if args.resume and datasets in (["digits"], ["fashion-mnist-60k"]):
        print(f"augserve train: --resume: {datasets[0]} keeps no journal of its runs; run it without --resume",
              file=sys.stderr)
        return 2
    if datasets in (["fashion-mnist"], ["fashion-mnist-60k"]):
        from dataclasses import replace

        from augserve.experiments.fashion import CANDIDATES, RECIPE, run_fashion_experiments, run_fashion_reference

        if datasets == ["fashion-mnist"]:
            strengths = _strengths(args.strengths or "1")
            if strengths is None:
                return 2
            name = args.recipes.strip() or "crop-flip-erase"
            if name not in CANDIDATES:
                print(f"augserve train: --recipes: fashion-mnist takes one of {', '.join(CANDIDATES)}, got {name!r}",
                      file=sys.stderr)
                return 2
            configurations = ("plain", *(f"strength {s:g}" for s in strengths), *_adaptive(args.adaptive or "gap"))
            print(run_fashion_experiments(out=args.out, seeds=args.seeds or 5, epochs=args.epochs,
                                          configurations=configurations, resume=args.resume,
                                          recipe=replace(RECIPE, pipeline=tuple(CANDIDATES[name]))))
        else:
            print(run_fashion_reference(out=args.out, seeds=args.seeds or 1, epochs=args.epochs))
        print(f"wrote {args.out}/summary.md, {args.out}/results.json and {args.out}/learning_curves.png")
        return 0
    if datasets == ["fashion-mnist-dev"]:
        from augserve.experiments.fashion import CANDIDATES, run_fashion_development

        candidates = tuple(name.strip() for name in args.recipes.split(",") if name.strip()) or tuple(CANDIDATES)
        unknown = [name for name in candidates if name not in CANDIDATES]
        if unknown:
            print(f"augserve train: --recipes: unknown {unknown[0]!r}; expected some of {', '.join(CANDIDATES)}",
                  file=sys.stderr)
            return 2
        print(run_fashion_development(out=args.out, seeds=args.seeds or 2, epochs=args.epochs, candidates=candidates,
                                      resume=args.resume))
        print(f"wrote {args.out}/summary.md and {args.out}/results.json")
        return 0
    if datasets == ["spoken-digits"]:
        from augserve.experiments.speech import run_speech_experiments

        print(run_speech_experiments(out=args.out, seeds=args.seeds or 5, epochs=args.epochs, workers=args.workers,
                                     resume=args.resume))
        print(f"wrote {args.out}/summary.md, {args.out}/results.json and {args.out}/learning_curves.png")
        return 0
    if datasets == ["fortunes"]:
        from augserve.experiments.text import run_text_experiments

        print(run_text_experiments(out=args.out, seeds=args.seeds or 5, epochs=args.epochs, workers=args.workers,
                                   resume=args.resume))
        print(f"wrote {args.out}/summary.md, {args.out}/results.json and {args.out}/learning_curves.png")
        return 0
    if datasets == ["tables-dev"]:
        from augserve.experiments.tables_development import run_table_development

        if args.epochs is not None or args.first_seed is not None:
            print("augserve train: tables-dev runs its candidates' own epochs on the development seeds: drop --epochs "
                  "and --first-seed", file=sys.stderr)
            return 2
        print(run_table_development(out=args.out, seeds=args.seeds or 32, workers=args.workers, resume=args.resume))
        print(f"wrote {args.out}/summary.md and {args.out}/results.json")
        return 0
    if datasets == ["tables"]:
        from augserve.experiments.tables import run_table_experiments

        print(run_table_experiments(out=args.out, seeds=args.seeds or 5, first_seed=args.first_seed or 0,
                                    epochs=args.epochs, workers=args.workers, resume=args.resume))
        print(f"wrote {args.out}/summary.md, {args.out}/results.json and {args.out}/<part>_curves.png")
        return 0
    if datasets != ["digits"]:
        return _train_series(args, datasets)
    from augserve.experiments.digits import run_experiments

    augmenter = None
    if args.server:
        from augserve.client import Client

        augmenter = Client(args.server, token=args.token)
    summary = run_experiments(out=args.out, seeds=args.seeds or 3, epochs=args.epochs or 100,
                              train_fraction=args.train_fraction, experiment=args.experiment, augmenter=augmenter)
    print(summary)
    print(f"wrote {args.out}/summary.md and {args.out}/learning_curves.png")
    return 0


def _strengths(text: str) -> tuple[float, ...] | None:
    """--strengths as numbers (none: no fixed strength); None, said on stderr, when it is not numbers."""
    try:
        return tuple(float(s) for s in text.split(",") if s.strip() and s.strip() != "none")
    except ValueError:
        print(f"augserve train: --strengths: expected numbers separated by commas or none, got {text!r}",
              file=sys.stderr)
        return None


def _adaptive(choice: str) -> tuple[str, ...]:
    """--adaptive as the adaptive configurations it runs."""
    from augserve.experiments.series import ADAPTIVE

    return {"both": ADAPTIVE, "gap": ADAPTIVE[:1], "views": ADAPTIVE[1:], "none": ()}[choice]


def _train_series(args: argparse.Namespace, datasets: list[str]) -> int:
    from augserve.experiments.series import REGULARIZERS, run_series_experiments
    from augserve.experiments.ucr import RULE, UCR_SETS, rule_sets
    from augserve.presets import PRESETS

    datasets = [chosen for name in datasets for chosen in (rule_sets() if name == RULE else [name])]
    unknown = [name for name in datasets if name not in UCR_SETS and not name.startswith("ucr:")]
    if unknown:
        print(f"augserve train: --dataset: unknown {unknown[0]!r}; expected digits or a comma-separated list of "
              f"{', '.join(UCR_SETS)}, ucr:<Name> (a set of the UCR 2018 archive folder, $AUGSERVE_UCR_DIR) or "
              f"{RULE} (the sets the archive-scale rule picks)",
              file=sys.stderr)
        return 2
    strengths = _strengths(args.strengths or "0.5,1,2")
    if strengths is None:
        return 2
    presets = tuple(name.strip() for name in args.presets.split(",") if name.strip())
    unknown = [name for name in presets if name not in PRESETS]
    if unknown:
        print(f"augserve train: --presets: unknown {unknown[0]!r}; expected names `augserve pipelines` lists",
              file=sys.stderr)
        return 2
    alone = REGULARIZERS if args.alone == "all" else \
        tuple(name.strip().replace("-", " ") for name in args.alone.split(",") if name.strip())
    unknown = [name for name in alone if name not in REGULARIZERS]
    if unknown:
        print(f"augserve train: --alone: unknown {unknown[0]!r}; expected all or some of "
              f"{', '.join(name.replace(' ', '-') for name in REGULARIZERS)}", file=sys.stderr)
        return 2
    if not (strengths or presets or alone):
        print("augserve train: --strengths none, no --presets and no --alone: nothing to compare with plain",
              file=sys.stderr)
        return 2
    adaptive = _adaptive(args.adaptive or "both")
    summary = run_series_experiments(datasets, out=args.out, seeds=args.seeds or 5, epochs=args.epochs,
                                     strengths=strengths, presets=presets, adaptive=adaptive, alone=alone,
                                     workers=args.workers, server=args.server, token=args.token,
                                     resume=args.resume)
    print(summary)
    print(f"wrote {args.out}/summary.md, {args.out}/results.json and a <dataset>_curves.png per dataset")
    return 0


def _pipelines(args: argparse.Namespace) -> int:
    from augserve.presets import PRESETS

    if args.json:
        print(json.dumps({name: steps for name, (_, steps) in PRESETS.items()}, indent=2))
        return 0
    if args.ops:
        from augserve.steps.reference import op_table

        print(op_table())
        return 0
    width = max(len(name) for name in PRESETS)
    for name, (description, _) in PRESETS.items():
        print(f"{name:<{width}}  {description}")
    print(_timm_grammar())
    return 0


def _timm_grammar() -> str:
    """timm's augmentation strings, accepted wherever a pipeline is named (``augserve/timm_strings.py``)."""
    from augserve.ops.timm_policies import RAND_CHOICES
    from augserve.timm_strings import AUTO_AUGMENT_NAMES

    sets = ", ".join(choice for choice in RAND_CHOICES if choice != "default")
    return ("\nAlso accepted wherever a pipeline is named: timm's augmentation strings, sections joined by '-'\n"
            "  rand-...      RandAugment: m<int> magnitude, n<int> ops per image, mstd<float> magnitude noise "
            "(over 100: uniform), mmax<int> magnitude clip, inc<0|1> magnitudes that grow, p<float> op "
            f"probability, t<set> op set ({sets}); e.g. rand-m9-mstd0.5-inc1\n"
            "  augmix-...    AugMix: m<int>, w<int> chains, d<int> depth (-1: 1 to 3), a<float> alpha, b<0|1> "
            "blended, mstd<float>; e.g. augmix-m5-w4-d2\n"
            f"  <policy>      AutoAugment, policy one of {', '.join(AUTO_AUGMENT_NAMES)}, optionally -mstd<float>; "
            "e.g. original-mstd0.5")


def _preview(args: argparse.Namespace) -> int:
    from augserve.tools.preview import write_preview

    preview = write_preview(args.pipeline, args.out, images_dir=args.images, dataset=args.dataset,
                            versions=args.versions, size=args.size, seed=args.seed)
    print(f"wrote {preview.path}")
    print(preview.summary)
    return 0


def _device_counts(args: argparse.Namespace) -> int:
    from augserve.tools import device_counts

    return device_counts.run(args)


def _bench(args: argparse.Namespace) -> int:
    from augserve.tools.bench.run import run_bench

    run_bench(batch=args.batch, size=args.size, repeats=args.repeats, device=args.device, out=args.out,
              only=args.only)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="augserve", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC augmentation server")
    try:
        _add_serve_flags(serve)
    except ImportError:  # a client-only install: running it says which extra to install
        pass
    serve.set_defaults(func=_serve)

    health = commands.add_parser("health", help="ask a server's gRPC health service; exit 0 if SERVING, else 1")
    port = os.environ.get("AUGSERVE_PORT", "50051")
    health.add_argument("--target", default=os.environ.get("AUGSERVE_HEALTH_TARGET", f"127.0.0.1:{port}"),
                        help="server address (default: %(default)s; env AUGSERVE_HEALTH_TARGET, else AUGSERVE_PORT)")
    health.add_argument("--service", default="",
                        help="service to ask about: '' (the server) or augserve.v1.Augmentation (default: '')")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds per ask (default: %(default)s)")
    health.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="keep asking until SERVING for up to SECONDS (each ask bounded by --timeout), for a "
                             "server still starting (default: %(default)s: ask once)")
    health.add_argument("--tls-ca", default=os.environ.get("AUGSERVE_HEALTH_TLS_CA"),
                        help="CA to verify a TLS server with (env AUGSERVE_HEALTH_TLS_CA); plaintext when unset")
    health.add_argument("--server-name", help="name in the server's certificate, when not the target's host")
    health.set_defaults(func=_health)

    pipelines = commands.add_parser("pipelines", help="list the preset pipelines and the timm strings accepted")
    pipelines.add_argument("--json", action="store_true", help="print the presets' steps as JSON")
    pipelines.add_argument("--ops", action="store_true",
                           help="print every op with its fields and defaults as a Markdown table")
    pipelines.set_defaults(func=_pipelines)

    preview = commands.add_parser("preview", help="write a PNG grid of originals and augmented versions")
    preview.add_argument("--pipeline", default=os.environ.get("AUGSERVE_PIPELINE", "imagenet-randaug"),
                         help="preset, timm string, JSON/YAML text or @file (default: %(default)s; "
                              "env AUGSERVE_PIPELINE)")
    preview.add_argument("--images", help="folder of images (default: scikit-image's sample photos)")
    preview.add_argument("--dataset", default="gunpoint",
                         help="UCR/UEA dataset shipped with sktime, for time-series pipelines (default: %(default)s)")
    preview.add_argument("--out", default="preview.png", help="output PNG (default: %(default)s)")
    preview.add_argument("--versions", type=int, default=5, help="augmented versions per image (default: %(default)s)")
    preview.add_argument("--size", type=int, default=256,
                         help="side the originals are resized to (default: %(default)s)")
    preview.add_argument("--seed", type=int, default=0, help="augmentation seed (default: %(default)s)")
    preview.set_defaults(func=_preview)

    datasets = commands.add_parser("datasets", help="describe a config's datasets, pack a folder into tar shards, or "
                                                  "translate a text dataset for back_translation")
    tools = datasets.add_subparsers(dest="tool", required=True)
    index = tools.add_parser("index", help="print what each dataset of a config holds, without serving")
    index.add_argument("config", help="server config file (YAML with a datasets: section)")
    index.add_argument("--check", action="store_true", help="read every file and list those that are not images")
    index.set_defaults(func=_datasets_index)
    pack = tools.add_parser("pack", help="write a class folder as WebDataset tar shards (<key>.jpg + <key>.cls)")
    pack.add_argument("folder", help="one subfolder per class")
    pack.add_argument("out", help="folder for the shards")
    pack.add_argument("--samples-per-shard", type=int, default=1000, help="(default: %(default)s)")
    pack.add_argument("--prefix", default="shard", help="shard names: PREFIX-000000.tar, ... (default: %(default)s)")
    pack.set_defaults(func=_datasets_pack)
    translate = tools.add_parser("translate", help="write a text dataset's paraphrases for back_translation beside "
                                 "it (only the sentences it lacks), with apertium")
    translate.add_argument("config", help="server config file (YAML with a datasets: section)")
    translate.add_argument("name", help="a dataset of type text in it")
    translate.add_argument("--pivot", default="spa",
                           help="language translated to and back from, as apertium names it (default: %(default)s)")
    translate.set_defaults(func=_datasets_translate)

    train = commands.add_parser("train", help="train with and without regularization (digits: small CNN and IMP; "
                                               "UCR series: FCN at fixed and adaptive augmentation strengths); "
                                               "learning curves and a summary table")
    train.add_argument("--dataset", default="digits",
                       help="digits, fashion-mnist (1,000 training images through a served folder), "
                            "fashion-mnist-dev (plain and candidate recipes on the same images, scored on a "
                            "development split of 5,000 training images: how the recipe is chosen), "
                            "fashion-mnist-60k (plain on all 60,000: the reference row), spoken-digits (espeak-ng "
                            "voices, plain vs the speech-perturb preset, tested on held-out voices with noise and "
                            "reverb), tables (breast-cancer made 1:10 imbalanced: plain vs SMOTE vs feature noise; "
                            "200 rows of digits: plain vs feature noise, masking and swap noise), tables-dev "
                            "(breast-cancer's model chosen on development seeds), fortunes (500 "
                            "sentences of Debian's fortune files in 5 categories: plain vs EDA vs back-translation), "
                            "or UCR sets, comma-separated: shipped with sktime (arrowhead, osuleaf, gunpoint, "
                            "italypowerdemand, acsf1), ucr:<Name> from the UCR 2018 archive folder, or ucr-rule "
                            "(the archive sets the rule in the README picks) (default: %(default)s)")
    train.add_argument("--server", default=os.environ.get("AUGSERVE_SERVER"),
                       help="augment on this server (host:port); in process when unset (env AUGSERVE_SERVER)")
    train.add_argument("--token", default=os.environ.get("AUGSERVE_TOKEN"), help="bearer token (env AUGSERVE_TOKEN)")
    train.add_argument("--experiment", choices=("all", "regularization", "pruning"), default="all",
                       help="digits: which experiment to run (default: %(default)s)")
    train.add_argument("--seeds", type=int, help="runs per configuration (default: 3 for digits, 5 for series, "
                                                  "fashion-mnist, spoken-digits, tables and fortunes, 2 for "
                                                  "fashion-mnist-dev, 1 for fashion-mnist-60k, 32 for tables-dev)")
    train.add_argument("--epochs", type=int, help="epoch budget (default: 100 for digits, 200 for fashion-mnist and "
                                                   "fashion-mnist-dev, 5 "
                                                   "for fashion-mnist-60k, 8 for spoken-digits, the recipes' "
                                                   "for tables, 40 "
                                                   "for fortunes; for series what 3000 optimizer steps take on the "
                                                   "set)")
    train.add_argument("--first-seed", type=int,
                       help="tables: the first of --seeds consecutive test seeds; tables-dev's development seeds "
                            "(100-199) are refused (default: 0)")
    train.add_argument("--train-fraction", type=float, default=0.2,
                       help="fraction of digits used for training (default: %(default)s)")
    train.add_argument("--strengths",
                       help="series and fashion-mnist: fixed augmentation strengths to compare with plain and "
                            "adaptive; none: no fixed strength (series: nor the regularized recipe) (default: 0.5,1,2 "
                            "for series, 1 for fashion-mnist)")
    train.add_argument("--adaptive", choices=("both", "gap", "views", "none"),
                       help="series and fashion-mnist: adaptive strengths run beside the fixed ones: AdaptiveStrength "
                            "on the training gap, on augmented validation views, both or none (default: both for "
                            "series, gap for fashion-mnist)")
    train.add_argument("--presets", default="",
                       help="series: presets to train with alone, each a configuration of plain's loop and budget on "
                            "batches that preset augments, e.g. timeseries,timeseries-um (default: none)")
    train.add_argument("--alone", default="",
                       help="series: the regularized recipe's parts to train with one at a time, each a configuration "
                            "of plain's loop and budget plus that part: all or some of augmentation, mixing, decay, "
                            "dropout, smoothing, early-stopping (default: none)")
    train.add_argument("--recipes", default="",
                       help="fashion-mnist-dev: candidate recipes, comma-separated: some of crop-flip-erase, trivial, "
                            "randaug, affine, trivial-mix (default: all); fashion-mnist: the one the regularized "
                            "runs are served (default: crop-flip-erase)")
    train.add_argument("--workers", type=int, default=2,
                       help="series, spoken-digits, tables, tables-dev and fortunes: runs side by side "
                            "(default: %(default)s)")
    train.add_argument("--out", default="train-results", help="output folder (default: %(default)s)")
    train.add_argument("--resume", action="store_true",
                       help="go on from the runs an interrupted command finished: the same command and --out again, "
                            "with --resume (its journal, results.journal.jsonl, holds them); all but digits and "
                            "fashion-mnist-60k (default: run every run afresh)")
    train.set_defaults(func=_train)

    bench = commands.add_parser("bench", help="throughput against torchvision, kornia, DALI, timm and tsaug, and "
                                "the service's own rows (wire, shared memory, fair sharing, many jobs and hosts)")
    bench.add_argument("--batch", type=int, default=64, help="images per batch (default: %(default)s)")
    bench.add_argument("--size", type=int, default=224, help="image height and width (default: %(default)s)")
    bench.add_argument("--repeats", type=int, default=8,
                       help="round-robin rounds; each engine runs 1 untimed and 2 timed batches per round "
                            "(default: %(default)s)")
    bench.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cpu or cuda (default: %(default)s)")
    bench.add_argument("--out", help="also write the table to this Markdown file")
    bench.add_argument("--only", metavar="TEXT", help="run only the cases whose name contains TEXT "
                       "(e.g. service; one that matches none lists them all); not with --out")
    bench.set_defaults(func=_bench)

    counts = commands.add_parser("device-counts", help="kernels, syncs and copies per call of each preset on the "
                                 "device plan, counted on a stand-in CUDA device (CPU values behind tensors that "
                                 "say cuda)")
    counts.add_argument("--sizes", default="32,256,1024", help="batch sizes (default: %(default)s)")
    counts.add_argument("--image-side", type=int, default=96,
                        help="image height and width; counts do not depend on it (default: %(default)s)")
    counts.add_argument("--out", help="results file to write the table into (e.g. bench/RESULTS.md)")
    counts.set_defaults(func=_device_counts)
    return parser


def _datasets_index(args: argparse.Namespace) -> int:
    from augserve.server.dataset_tools import describe

    print(describe(args.config, args.check))
    return 0


def _datasets_pack(args: argparse.Namespace) -> int:
    from augserve.server.dataset_tools import pack_folder

    shards = pack_folder(args.folder, args.out, args.samples_per_shard, args.prefix)
    print(f"wrote {len(shards)} shard(s): {shards[0].parent}/{shards[0].name} ... {shards[-1].name}")
    return 0


def _datasets_translate(args: argparse.Namespace) -> int:
    from augserve.server.config import read_config_file
    from augserve.server.datasets import load_datasets
    from augserve.server.text_datasets import translate_dataset

    declared = read_config_file(args.config).get("datasets", {})
    entry = declared.get(args.name)
    if not isinstance(entry, dict) or entry.get("type") != "text":
        texts = sorted(name for name, e in declared.items() if isinstance(e, dict) and e.get("type") == "text")
        print(f"augserve datasets translate: {args.name!r} is not a text dataset of {args.config} (its text "
              f"datasets: {', '.join(texts) or 'none'})", file=sys.stderr)
        return EXIT_USAGE
    dataset = load_datasets({args.name: entry})[args.name]()  # its fields checked as a server checks them
    translated, stored = translate_dataset(dataset, args.pivot)
    print(f"{dataset.name}: {translated} sentences translated via {args.pivot}, {stored} stored before, in "
          f"{dataset.paraphrase_file}")
    return 0


def _version() -> str:
    from augserve import __version__

    return __version__


def _cuda() -> bool:
    try:
        import torch
    except ImportError:  # a client-only install
        return False
    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from augserve.runtime import keep_freed_memory
    from augserve.spec import SpecError

    from augserve.client.errors import ServerError

    keep_freed_memory()
    try:
        return args.func(args)
    except ImportError as error:  # only the client is installed (or a framework is missing)
        print(f"augserve {args.command}: {error.name or error} is not installed; this command needs the server "
              "side: pip install 'augserve[server]' (Python 3.11+)", file=sys.stderr)
        return EXIT_USAGE
    except (SpecError, ValueError, OSError) as error:
        print(f"augserve {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ServerError as error:
        print(f"augserve {args.command}: the server refused: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
