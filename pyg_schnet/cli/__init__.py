"""``pyg-schnet``: the command line (data, train, evaluate, predict, export,
filters, probes, study, benchmark, throughput, sweep; :data:`USAGE`). Each command
parses its arguments with the one :class:`~pyg_schnet.cli.parser.Parser` and
calls the library.

Bad input ends with one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
import warnings
from typing import List, Optional

from pyg_schnet.cli.parser import DEVICE_HELP, POSITIVE, ROOT_HELP, Parser, seed
from pyg_schnet.errors import UserError, check_text
from pyg_schnet.version import package_version


def set_wait_policy(command: str) -> None:
    """PyTorch's OpenMP threads spin while they wait. When the cores are shared
    with another busy process that turns a training step 50x slower (measured
    here: 20 instead of 1,000 molecules/s), so every command waits passively,
    except ``benchmark``, which owns the machine while it times: with two
    threads in one process passive waiting cost pyg_schnet 15-20% there
    (README, Speed). It only takes effect before torch is imported, so it is
    set where the process starts, before the command runs; an explicit
    setting wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE" if command == "benchmark" else "PASSIVE")


USAGE = """usage: pyg-schnet COMMAND [...] | pyg-schnet --version

commands:
  data       build or load QM9 and print a summary
  train      train a model: train --config FILE [--key value ...] | train --resume RUN_DIR
  evaluate   MAE/RMSE and a parity plot of a run: evaluate RUN_DIR [--split test|val|train]
  predict    predict molecules: predict RUN_DIR|--model qm9-U0 [FILE.xyz|.sdf ...] [--smiles S]
  filters    per filter: parameter count and invariance errors on a QM9 batch
  probes     what trained weights learned: probes RUN_DIR ... [--model NAME] [--out FILE.csv]
  study      run a study spec and report it: study run|report SPEC.yaml [--quick] [--jobs N]
  benchmark  time pyg_schnet against PyG's SchNet on the same batches
  throughput time training over threads x processes x model size (the default's rule)
  sweep      run a W&B sweep file here with W&B's sweep engine, no server: sweep FILE --count N
  export     ship a finished run as a pretrained model: export RUN_DIR --name qm9-U0
"""


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- data --------------------------------------------------------------------


def cmd_data(argv: List[str]) -> int:
    p = Parser(prog="pyg-schnet data")
    p.add_argument("--root", default=None, help=ROOT_HELP)
    p.add_argument("--source", default="qm9pack")
    p.add_argument(
        "--max-molecules",
        "--max_molecules",
        type=POSITIVE,
        default=None,
        help="a seeded random subset of N molecules (as the config key max_molecules)",
    )
    p.add_argument("--force-reload", "--force_reload", action="store_true")
    a = p.parse_args(argv)
    from pyg_schnet.data import QM9, TARGETS, UNITS

    t0 = time.perf_counter()
    ds = QM9(a.root, source=a.source, max_molecules=a.max_molecules, force_reload=a.force_reload)
    total = time.perf_counter() - t0
    if ds.build_seconds is not None:
        print(
            f"built QM9 from {a.source} in {ds.build_seconds:.2f} s "
            f"(total {total:.2f} s including the cached load)"
        )
    else:
        print(f"loaded cached QM9 ({a.source}) in {total:.2f} s")
    y = ds.targets().double()
    print(
        f"molecules: {len(ds)}  atoms: {int(ds.num_atoms().sum())}  "
        f"peak RSS: {peak_rss_mib():.0f} MiB"
    )
    print(f"{'target':<9}{'unit':<13}{'mean':>14}{'std':>14}")
    for i, name in enumerate(TARGETS):
        print(
            f"{name:<9}{UNITS[name]:<13}{float(y[:, i].mean()):>14.6g}{float(y[:, i].std()):>14.6g}"
        )
    return 0


# -- train ---------------------------------------------------------------------


def train_parser() -> argparse.ArgumentParser:
    """``pyg-schnet train``: its own flags, then one per config key
    (generated from :class:`pyg_schnet.run.config.Config` and the filter registry)."""
    from pyg_schnet.cli.config_flags import add_config_arguments

    p = Parser(
        prog="pyg-schnet train",
        allow_abbrev=False,
        config_flags=True,
        usage="pyg-schnet train --config FILE [--KEY VALUE ...] [--overwrite] [--quiet]\n"
        "       pyg-schnet train --resume RUN_DIR",
        description="Train one model. Settings: the defaults below, then the config "
        "file, then the flags; the resolved settings are saved as "
        "RUN_DIR/config.yaml.",
    )
    p.add_argument("--config", metavar="FILE", help="YAML config file")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in the directory (the whole directory, once the new run is "
        "finished; until then the old run stays as it was)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no per-epoch output (a progress bar on a terminal, else one line per epoch)",
    )
    add_config_arguments(p)
    return p


def cmd_train(argv: List[str]) -> int:
    from pyg_schnet.cli.config_flags import overrides_from
    from pyg_schnet.run.inference import resolve_device
    from pyg_schnet.run.config import load_config
    from pyg_schnet.run.trainer import resume_config, train

    a = train_parser().parse_args(argv)
    overrides = overrides_from(a, argv)
    if a.resume is not None:
        if a.config is not None or overrides:
            raise UserError("--resume takes the run's saved config; no --config or overrides")
        cfg = resume_config(a.resume)
    else:
        if a.config is None and not overrides:
            raise UserError("train needs --config FILE (and/or --key value flags)")
        cfg = load_config(a.config, overrides)
    resolve_device(cfg.device)  # this machine has it: refused before any file is written
    processes = cfg.resolved_processes()
    if processes > 1 and "WORLD_SIZE" not in os.environ:  # not already under torchrun
        from pyg_schnet.run.launch import launch
        from pyg_schnet.run.rundir import RunDir

        RunDir(cfg.out).check_free()  # refused here, not after starting the processes
        return launch(argv, processes)
    metrics = train(cfg, resume=a.resume is not None, overwrite=a.overwrite, quiet=a.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        unit, mae = metrics["unit"], metrics["test_mae"]
        if mae is None or mae != mae:  # no test molecules (test_size 0)
            result = "no test molecules, no test MAE"
        else:
            extra = f" ({metrics['test_mae_meV']:.1f} meV)" if "test_mae_meV" in metrics else ""
            result = f"test MAE {mae:.5g} {unit}{extra}"
        print(
            f"{cfg.label} {cfg.target}: {result} "
            f"after {metrics['epochs']} epochs, {metrics['train_seconds']:.1f} s; "
            f"run directory {cfg.out}"
        )
    return 0


# -- evaluate / predict -----------------------------------------------------------


def cmd_evaluate(argv: List[str]) -> int:
    p = Parser(
        prog="pyg-schnet evaluate",
        usage="pyg-schnet evaluate (RUN_DIR | --model NAME [--root DIR] [--limit N]) "
        "[--split test|val|train] [--device cpu|cuda]",
    )
    p.add_argument("run_dir", nargs="?")
    p.add_argument(
        "--model",
        default=None,
        help="a shipped pretrained model (qm9-U0, qm9-gap) or a folder from export",
    )
    p.add_argument(
        "--root",
        default=None,
        help="QM9 root (default: a run's recorded root if it is on this machine, else as train)",
    )
    p.add_argument("--limit", type=POSITIVE, default=None, help="with --model: a random subset")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("--batch-size", "--batch_size", type=POSITIVE, default=None)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument(
        "--out",
        default=None,
        help="with --model: the folder for its plots and per-molecule CSV "
        "(default: ./evaluate-NAME)",
    )
    a = p.parse_args(argv)
    if (a.model is None) == (a.run_dir is None):
        raise UserError("evaluate needs a run directory or --model NAME (not both)")
    if a.model is not None:
        from pyg_schnet.analysis.evaluate import evaluate_model

        out = a.out or f"evaluate-{os.path.basename(os.path.normpath(a.model))}"
        res = evaluate_model(a.model, out, a.root, a.split, a.limit, a.batch_size or 250, a.device)
        card = (
            f" (its card: {res['card_mae']:.5g} {res['unit']} on all of it)"
            if res["card_mae"] is not None
            else ""
        )
        print(
            f"{a.model} {res['split']}: {res['count']} molecules, MAE {res['mae']:.5g} "
            f"{res['unit']}, RMSE {res['rmse']:.5g} {res['unit']}{card}; parity plot "
            f"{res['plot']}, error plots {res['errors_plot']}, per molecule {res['predictions']}"
        )
        return 0
    if a.out is not None:
        raise UserError("evaluate: --out is for --model (a run's files go into its directory)")
    from pyg_schnet.analysis.evaluate import evaluate

    res = evaluate(a.run_dir, a.split, a.batch_size, a.root, a.device)
    print(
        f"{res['split']}: {res['count']} molecules, MAE {res['mae']:.5g} {res['unit']}, "
        f"RMSE {res['rmse']:.5g} {res['unit']}; parity plot {res['plot']}, error histogram "
        f"and MAE per molecule size {res['errors_plot']}, per molecule {res['predictions']}"
    )
    return 0


def cmd_predict(argv: List[str]) -> int:
    p = Parser(
        prog="pyg-schnet predict",
        usage="pyg-schnet predict (RUN_DIR | --model NAME) [FILE.xyz|FILE.sdf ...] "
        "[--smiles S ...] [-o CSV [--overwrite]] [--device cpu|cuda]",
    )
    p.add_argument("paths", nargs="*", help="a run directory (without --model), then inputs")
    p.add_argument(
        "--model",
        default=None,
        help="a shipped pretrained model (qm9-U0, qm9-gap) or a folder from export, "
        "instead of a run directory",
    )
    p.add_argument("--smiles", action="append", default=[])
    p.add_argument("--output", "-o", default=None, help="CSV path (default: stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    a = p.parse_args(argv)
    if a.model is None and not a.paths:
        raise UserError("predict needs a run directory or --model NAME")
    a.run_dir, a.inputs = (None, a.paths) if a.model is not None else (a.paths[0], a.paths[1:])
    from pyg_schnet.analysis.evaluate import GEOMETRY_NOTE, predict, predictions_csv
    from pyg_schnet.io import check_output_file, write_text
    from pyg_schnet.run.inference import resolve_device

    if a.output is not None:  # before any work
        check_output_file(a.output, a.overwrite)
    resolve_device(a.device)

    def progress(done: int, total: int) -> None:
        if total >= 1000 and (done == total or done % 2048 < 256):
            print(f"predicted {done:,} of {total:,} molecules", file=sys.stderr, flush=True)

    target, unit, rows = predict(
        a.run_dir, a.inputs, a.smiles, pretrained=a.model, device=a.device, progress=progress
    )
    text = predictions_csv(target, unit, rows)
    if a.smiles:  # the geometry's cost concerns conformers made from SMILES only
        print(GEOMETRY_NOTE, file=sys.stderr)
    outside = [r["name"] for r in rows if r["warning"]]
    if outside:
        print(
            f"warning: {len(outside)} molecule(s) lie outside QM9's range (see the warning "
            f"column): {', '.join(outside[:5])}{' ...' if len(outside) > 5 else ''}",
            file=sys.stderr,
        )
    if a.output is None:
        sys.stdout.write(text)
    else:
        write_text(a.output, text)
        print(f"wrote {len(rows)} rows to {a.output}", file=sys.stderr)
    failed = [r for r in rows if r["error"]]
    if failed:  # the others are written: one line for all that failed
        more = f" (and {len(failed) - 1} more; see the error column)" if len(failed) > 1 else ""
        raise UserError(
            f"{len(failed)} of {len(rows)} molecule(s) not predicted: {failed[0]['error']}{more}"
        )
    return 0


def cmd_export(argv: List[str]) -> int:
    from pyg_schnet.hub import EXPORT_DIR, export_model

    p = Parser(
        prog="pyg-schnet export",
        usage="pyg-schnet export RUN_DIR --name NAME [--to DIR] [--overwrite | --if-better]",
    )
    p.add_argument("run_dir")
    p.add_argument("--name", required=True, help="the model's name (predict --model NAME)")
    p.add_argument(
        "--to",
        default=EXPORT_DIR,
        help=f"folder of models (default: ./{EXPORT_DIR} under the current directory, where "
        f"--model NAME looks; the package's own models are in pyg_schnet/weights)",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    how.add_argument(
        "--if-better",
        "--if_better",
        action="store_true",
        help="replace a model of that name only if the run's test MAE is lower on the same "
        "test molecules (else it writes nothing and says which is better)",
    )
    a = p.parse_args(argv)
    check_text("--name", a.name)
    if os.path.exists(a.to) and not os.path.isdir(a.to):
        raise UserError(f"--to {a.to} is a file, not a folder of models")
    folder = export_model(a.run_dir, a.name, a.to, a.overwrite, if_better=a.if_better)
    print(f"{a.name}: {folder} (model.pt, card.json)")
    return 0


def cmd_filters(argv: List[str]) -> int:
    p = Parser(prog="pyg-schnet filters")
    p.add_argument("--root", default=None, help=ROOT_HELP)
    p.add_argument("--batch-size", "--batch_size", type=POSITIVE, default=32)
    p.add_argument("--seed", type=seed, default=0)
    a = p.parse_args(argv)
    from pyg_schnet.analysis.invariance import report

    rows = report(a.root, a.batch_size, a.seed)
    info = rows.pop("_batch")
    print(
        f"QM9 batch of {info['molecules']} molecules ({info['atoms']} atoms), random init, "
        f"errors = max |change| / std of predictions"
    )
    print(f"{'filter':<10}{'parameters':>12}{'rotation':>12}{'translation':>13}{'permutation':>13}")
    for name, r in rows.items():
        print(
            f"{name:<10}{r['parameters']:>12,}{r['rotation']:>12.2e}"
            f"{r['translation']:>13.2e}{r['permutation']:>13.2e}"
        )
    return 0


def cmd_study(argv: List[str]) -> int:
    from pyg_schnet.cli.study import main as study_main

    return study_main(argv)


def cmd_benchmark(argv: List[str]) -> int:
    from pyg_schnet.cli.benchmark import main as bench_main

    return bench_main(argv)


def cmd_sweep(argv: List[str]) -> int:
    from pyg_schnet.cli.sweep import main as sweep_main

    return sweep_main(argv)


def cmd_probes(argv: List[str]) -> int:
    from pyg_schnet.cli.probes import main as probes_main

    return probes_main(argv)


def cmd_throughput(argv: List[str]) -> int:
    from pyg_schnet.cli.throughput import main as throughput_main

    return throughput_main(argv)


COMMANDS = {
    "data": cmd_data,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "filters": cmd_filters,
    "probes": cmd_probes,
    "study": cmd_study,
    "benchmark": cmd_benchmark,
    "throughput": cmd_throughput,
    "sweep": cmd_sweep,
    "export": cmd_export,
}


def _one_line_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _one_line_warnings()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"pyg-schnet {package_version()}")
        return 0
    cmd, rest = argv[0], argv[1:]
    set_wait_policy(cmd)
    if cmd not in COMMANDS:
        print(
            f"error: unknown command {cmd!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    try:
        return COMMANDS[cmd](rest)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; try a smaller batch_size or max_molecules", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno in STORAGE_ERRORS:  # the machine's storage, not the package
            where = f" at {exc.filename}" if exc.filename else ""
            print(
                f"error: storage error{where}: {exc.strerror or os.strerror(exc.errno or 0)}; "
                f"free space or use a folder you can write (what was written before is intact)",
                file=sys.stderr,
            )
            return 2
        return _internal_error(exc)
    except Exception as exc:
        return _internal_error(exc)


#: Commands whose process holds nothing to clean up when they return: no W&B
#: run, no child processes, no temporary files, every output written and
#: closed. :func:`console` ends them without the interpreter's teardown.
QUICK_EXIT = frozenset({"predict"})


def console() -> None:
    """The ``pyg-schnet`` program: :func:`main`, then exit with its code.
    After a command of :data:`QUICK_EXIT` the process ends as soon as its
    output is flushed, skipping the interpreter's teardown of torch's modules
    (0.3-0.6 s here, as long as predicting 2,000 molecules; docs/speed.md).
    Tests and library callers use :func:`main`, which always returns."""
    code = main()
    if sys.argv[1:2] and sys.argv[1] in QUICK_EXIT:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe: nothing more can be delivered
            code = code or 1
        os._exit(code)
    sys.exit(code)


#: Errors of a full or read-only disk, a quota or ``ulimit -f``: the user's to
#: fix, reported as one line with exit 2 (every write is atomic, so nothing
#: written before is lost).
STORAGE_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
)


def _internal_error(exc: BaseException) -> int:
    """A bug, not bad input: still one line, the traceback on request."""
    if os.environ.get("PYG_SCHNET_DEBUG"):
        raise exc
    msg = str(exc).splitlines()[0] if str(exc) else ""
    print(
        f"error: internal error {type(exc).__name__}: {msg} "
        f"(set PYG_SCHNET_DEBUG=1 for the traceback)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
