"""Shared helpers for the CLI tests: run the real ``pyg-schnet`` as a subprocess."""

import hashlib
import os
import os.path as osp
import subprocess
import sys

import yaml

from conftest import REPO, SAMPLE_ROOT, SAMPLE_SOURCE

TINY = dict(
    filter="gaussian",
    target="U0",
    root=SAMPLE_ROOT,
    source=SAMPLE_SOURCE,
    max_molecules=300,
    train_size=200,
    val_size=50,
    test_size=50,
    hidden_channels=16,
    num_filters=16,
    num_interactions=2,
    cutoff=4.0,
    num_gaussians=12,
    num_bins=12,
    batch_size=25,
    lr=1e-3,
    epochs=4,
    patience=10,
    seed=0,
    wandb="disabled",
    num_threads=1,
    processes=1,
    fast=False,  # the exact mode: no compilation in each test process (tests/nn/test_fast.py)
)

#: ``pyg-schnet benchmark`` at a tiny size: one batch of 10, one round, no warm-up to speak of.
TINY_BENCHMARK = (
    "--hidden-channels", "16", "--num-filters", "16", "--num-interactions", "1",
    "--batch-size", "10", "--batches", "1", "--rounds", "1", "--warmup", "1",
)  # fmt: skip


def write_config(path, **overrides):
    cfg = dict(TINY, **overrides)
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return str(path)


def env(**extra):
    e = dict(
        os.environ,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    e.pop("PYG_SCHNET_DEBUG", None)
    e.pop("PYG_SCHNET_FAULT", None)
    e.update(extra)
    return e


def cli(*args, cwd=REPO, timeout=600, check=None, extra_env=None):
    """Run ``python -m pyg_schnet.cli ARGS``; returns the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", "pyg_schnet.cli", *map(str, args)],
        cwd=cwd,
        env=env(**(extra_env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check is True:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_here(*args, cwd=None, extra_env=None):
    """``cli`` without the interpreter start (about 6 s of imports): the CLI's
    ``main`` in this process, in ``cwd`` and the same environment, its output
    captured; returns a CompletedProcess. For commands whose process itself is
    not under test (no kills, locks between processes, W&B or worker pools)."""
    import contextlib
    import io
    import warnings

    import torch

    from pyg_schnet.cli import main

    saved_env, saved_cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    showwarning = warnings.showwarning  # main() makes warnings one line
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env(**(extra_env or {})))
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)
        warnings.showwarning = showwarning
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def popen(*args, cwd=REPO):
    return subprocess.Popen(
        [sys.executable, "-m", "pyg_schnet.cli", *map(str, args)],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_one_line_error(proc, match=None):
    """Non-zero exit, exactly one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    if match is not None:
        assert match.lower() in errors[0].lower(), errors[0]
    return errors[0]


def snapshot(*roots):
    """Hashes of every file under the given paths (to prove nothing changed)."""
    out = {}
    for root in roots:
        if osp.isfile(root):
            with open(root, "rb") as f:
                out[root] = hashlib.sha256(f.read()).hexdigest()
            continue
        for dirpath, _, files in os.walk(root):
            for name in files:
                p = osp.join(dirpath, name)
                try:
                    with open(p, "rb") as f:
                        out[p] = hashlib.sha256(f.read()).hexdigest()
                except PermissionError:
                    out[p] = "unreadable"
    return out


def train_tiny(folder, **overrides):
    """Train the tiny config into ``folder/run`` through the CLI; returns the
    run directory and the finished process."""
    cfg = write_config(folder / "cfg.yaml", out=str(folder / "run"), **overrides)
    proc = run_here("train", "--config", cfg, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return folder / "run", proc


def offline_run_record(wandb_dir):
    """The run record (``wandb.proto`` ``RunRecord``: name, group, tags, job
    type, sweep id, config) of the one offline run under ``wandb_dir``, read
    from its ``.wandb`` file, the record stream ``wandb sync`` uploads: a
    LevelDB-style log (a 7-byte header, then 32 KiB blocks of chunks, each
    with a 7-byte header: CRC, length, type 1 full, 2 first, 3 middle, 4 last)."""
    import glob
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(osp.join(str(wandb_dir), "offline-run-*", "*.wandb"))
    with open(path, "rb") as f:
        data = f.read()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0)
    block, pos, chunks = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            if record.WhichOneof("record_type") == "run":
                return record.run
    raise AssertionError(f"no run record in {path}")
