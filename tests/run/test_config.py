"""The config boundary: nested filter settings, flags generated from the
dataclass and the registry, old flat keys as aliases, and a new filter that is
one class plus one registry entry."""

import os.path as osp

import pytest
import torch
import yaml
from torch import Tensor

from conftest import REPO
from helpers import TINY, write_config
from pyg_schnet import cli
from pyg_schnet.cli.config_flags import parse_overrides
from pyg_schnet.run.config import load_config, resolve_filter
from pyg_schnet.errors import UserError
from pyg_schnet.nn.filters import FILTERS, RadialFilter, _mlp
from pyg_schnet.nn.schnet import build_model
from pyg_schnet.run.checkpoint import upgrade_hparams


class SineFilter(RadialFilter):
    r"""A throwaway filter for the tests: sines of the distance into the MLP.

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        frequencies (int): Number of sine frequencies. (default: :obj:`4`)
        scale (float): Frequency unit in 1/Å, times pi over the cutoff.
            (default: :obj:`1.0`)
    """

    name = "sine"

    def __init__(
        self, num_filters: int = 128, cutoff: float = 10.0, frequencies: int = 4, scale: float = 1.0
    ) -> None:
        super().__init__(num_filters, cutoff)
        if frequencies < 1:
            raise UserError(f"frequencies must be at least 1, got {frequencies}")
        self.hparams = dict(
            num_filters=num_filters, cutoff=cutoff, frequencies=frequencies, scale=scale
        )
        self.register_buffer("k", torch.arange(1, frequencies + 1) * scale * torch.pi / cutoff)
        self.mlp = _mlp(frequencies, num_filters)
        self.reset_parameters()

    @property
    def feature_width(self) -> float:
        return self.cutoff / (2 * len(self.k))

    def network(self, dist: Tensor) -> Tensor:
        return self.mlp(torch.sin(dist.unsqueeze(-1) * self.k))  # [E, num_filters]


@pytest.fixture
def sine():
    """Register the throwaway filter for one test (nothing else is touched)."""
    FILTERS.register(SineFilter.name, SineFilter)
    yield SineFilter
    FILTERS.unregister(SineFilter.name)


def _tiny_flags(**extra):
    values = {k: v for k, v in TINY.items() if k not in ("num_gaussians", "num_bins")}
    values.update(extra)
    return [f"--{k}={v}" for k, v in values.items()]


def test_new_filter_trains_from_a_config_file_and_from_flags(sine, tmp_path, capsys):
    # from a config file, the options nested under the filter
    path = write_config(
        tmp_path / "sine.yaml",
        filter={"name": "sine", "frequencies": 6},
        out=str(tmp_path / "from_file"),
        epochs=2,
    )
    # (TINY's flat num_gaussians and num_bins stay: old flat keys set no option of "sine")
    assert cli.main(["train", "--config", path, "--quiet"]) == 0
    saved = yaml.safe_load(open(tmp_path / "from_file" / "config.yaml"))
    assert saved["filter"] == {"name": "sine", "frequencies": 6, "scale": 1.0}
    # from flags only
    out = tmp_path / "from_flags"
    assert (
        cli.main(
            [
                "train",
                *_tiny_flags(filter="sine", epochs=2, out=out),
                "--filter.scale",
                "0.5",
                "--quiet",
            ]
        )
        == 0
    )
    saved = yaml.safe_load(open(out / "config.yaml"))
    assert saved["filter"] == {"name": "sine", "frequencies": 4, "scale": 0.5}
    metrics = yaml.safe_load(open(out / "metrics.json"))
    assert metrics["filter"] == "sine" and metrics["epochs"] == 2
    # the run directory alone rebuilds it (evaluate loads the checkpoint)
    assert cli.main(["evaluate", str(out)]) == 0
    assert "MAE" in capsys.readouterr().out


def test_new_filter_options_are_typed_checked_and_in_the_help(sine, capsys):
    with pytest.raises(UserError, match="filter.frequencies must be an integer"):
        load_config(None, {"filter": "sine", "filter.frequencies": "2.5"})
    with pytest.raises(UserError, match="frequencies must be at least 1, got 0"):
        load_config(None, {"filter": "sine", "filter.frequencies": 0})
    with pytest.raises(
        UserError, match="filter 'sine' has no option 'num_bins'; its options: frequencies, scale"
    ):
        load_config(None, {"filter": {"name": "sine", "num_bins": 10}})
    assert FILTERS.option_help("sine")["scale"].startswith("Frequency unit in 1/Å")
    with pytest.raises(SystemExit):
        cli.train_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--filter.frequencies INT" in text and "Number of sine frequencies. [sine]" in text


def test_every_constructor_argument_is_reachable():
    cfg = load_config(None, {"filter": {"name": "conv1d", "num_conv_layers": 3, "num_bins": 20}})
    assert cfg.filter == {
        "name": "conv1d",
        "num_bins": 20,
        "conv_channels": 8,
        "kernel_size": 5,
        "num_conv_layers": 3,
        "distance_bin_width": 0.0,
        "rounding": "floor",
        "discrete_envelope": False,
    }
    cfg = load_config(
        None, parse_overrides(["--filter.rbf_start=0.5", "--filter.rbf_width", "0.3", "--cutoff=6"])
    )
    f = build_model(**cfg.model_hparams()).filters[0]
    assert f.hparams["rbf_start"] == 0.5 and f.feature_width == pytest.approx(0.3)
    assert f.cutoff == 6.0  # the model's cutoff: one source of truth


@pytest.mark.parametrize(
    "text",
    [
        "{name: conv1d, num_bins: 25}",
        "{'name': 'conv1d', 'num_bins': 25}",
        '{"name": "conv1d", "num_bins": 25}',
    ],
)
def test_sweep_agents_nested_form(text):
    """W&B's agent renders a nested sweep parameter as a Python dict."""
    cfg = load_config(None, parse_overrides([f"--filter={text}"]))
    assert cfg.filter["name"] == "conv1d" and cfg.filter["num_bins"] == 25


def test_flat_keys_are_aliases_with_their_old_meaning(tmp_path):
    # an old config lists every filter's options flat; each goes to the filter that takes it
    old = dict(
        TINY,
        filter="conv1d",
        num_gaussians=50,
        num_bins=30,
        conv_channels=4,
        kernel_size=3,
        distance_bin_width=0.0,
    )
    cfg = load_config(write_config(tmp_path / "old.yaml", **old))
    assert cfg.filter == {
        "name": "conv1d",
        "num_bins": 30,
        "conv_channels": 4,
        "kernel_size": 3,
        "num_conv_layers": 2,
        "distance_bin_width": 0.0,
        "rounding": "floor",
        "discrete_envelope": False,
    }
    # old flags
    got = parse_overrides(["--num_gaussians=25", "--num-bins", "7"])
    assert got == {"num_gaussians": "25", "num_bins": "7"}
    assert load_config(None, got).filter["num_gaussians"] == 25
    # the later source wins, whichever spelling it uses
    path = write_config(tmp_path / "nested.yaml", filter={"name": "gaussian", "num_gaussians": 9})
    assert load_config(path, {"num_gaussians": 11}).filter["num_gaussians"] == 11
    path = write_config(tmp_path / "flat.yaml", num_gaussians=9)
    assert load_config(path, {"filter.num_gaussians": 13}).filter["num_gaussians"] == 13


def test_a_saved_config_round_trips(tmp_path):
    cfg = load_config(None, {"filter": "distance", "filter.distance_bin_width": 0.1})
    from pyg_schnet.run.config import save_config

    save_config(cfg, str(tmp_path / "c.yaml"))
    again = load_config(str(tmp_path / "c.yaml"))
    assert again.to_dict() == cfg.to_dict()
    assert resolve_filter("coords") == {"name": "coords"}


def test_old_checkpoint_hyperparameters_rebuild_the_same_model():
    old = dict(
        filter="conv1d",
        hidden_channels=16,
        num_filters=8,
        num_interactions=2,
        cutoff=4.0,
        max_num_neighbors=32,
        num_gaussians=50,
        num_bins=12,
        conv_channels=4,
        kernel_size=3,
        distance_bin_width=0.0,
        shared_filters=False,
        fast=False,
        readout="add",
    )
    new = upgrade_hparams(old)
    assert new["filter"] == {
        "name": "conv1d",
        "num_bins": 12,
        "conv_channels": 4,
        "kernel_size": 3,
        "distance_bin_width": 0.0,
    }
    model = build_model(**new)
    assert build_model(**model.hparams()).hparams() == model.hparams()
    assert upgrade_hparams(model.hparams()) == model.hparams()


def test_unknown_model_arguments_are_errors():
    with pytest.raises(
        UserError,
        match="unknown model argument 'num_bins'.*options of filter 'gaussian': num_gaussians",
    ):
        build_model("gaussian", num_bins=10)
    with pytest.raises(UserError, match="no registered filter has the option 'bogus'"):
        parse_overrides(["--filter.bogus=1"])


def test_committed_run_directories_load_unchanged():
    """Run directories written before the nested filter load, and the study
    finds them equal to today's plan, so nothing is retrained."""
    from conftest import REPO
    from pyg_schnet.run.rundir import RunDir
    from pyg_schnet.study import load_spec, plan

    runs = [
        r
        for r in plan(load_spec(osp.join(REPO, "experiments", "studies", "factors.yaml")))
        if osp.isfile(osp.join(r.cfg.out, "metrics.json"))
    ]
    if not runs:
        pytest.skip("no committed factor-study runs")
    for r in runs:
        assert RunDir(r.cfg.out).differences(r.cfg) == [], r.rel
    quantised = [r for r in runs if r.variant == "gaussian_q0.1"]
    assert all(r.cfg.filter["distance_bin_width"] == 0.1 for r in quantised)


# -- no command depends on the current directory -----------------------------------------


def test_default_root_is_the_same_from_every_directory(monkeypatch, tmp_path):
    from pyg_schnet.data import default_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYG_SCHNET_DATA", "data/here")  # made absolute once, when read
    assert default_root() == str(tmp_path / "data" / "here")
    monkeypatch.delenv("PYG_SCHNET_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == str(tmp_path / "cache" / "pyg_schnet" / "qm9")
    assert load_config(None, {"filter": "gaussian"}).root == default_root()


def test_relative_paths_in_a_config_file_are_relative_to_the_file(monkeypatch, tmp_path):
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    path = write_config(folder / "c.yaml", root="../qm9", split_file="split.npz")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path)
    assert cfg.root == str(tmp_path / "a" / "qm9")
    assert cfg.split_file == str(folder / "split.npz")
    # on the command line a relative path is relative to the current directory
    cfg = load_config(path, {"root": "elsewhere/qm9"})
    assert cfg.root == str(tmp_path / "elsewhere" / "qm9")


def test_shipped_configs_by_name(tmp_path):
    from pyg_schnet.run.config import shipped_configs

    assert {"quickstart", "sweep_base"} <= set(shipped_configs())
    cfg = load_config("quickstart")
    assert cfg.train_size == 5000 and cfg.out == "runs/quickstart"
    with pytest.raises(
        UserError,
        match=r"config 'quickstrat' is neither a file nor a shipped "
        r"config; shipped: .*quickstart",
    ):
        load_config("quickstrat")
    with pytest.raises(UserError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_train_and_evaluate_from_another_directory(tmp_path):
    """The shipped quickstart config from a directory that is not the
    repository: the run lands under the current directory, and its saved config
    names the data by absolute path, so evaluating it works from anywhere."""
    from helpers import cli as run

    work = tmp_path / "work"
    work.mkdir()
    flags = [f"--{k}={v}" for k, v in TINY.items() if k != "root"] + ["--epochs=1"]
    proc = run(
        "train",
        "--config",
        "quickstart",
        "--root",
        osp.relpath(TINY["root"], work),
        *flags,
        "--quiet",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load(open(work / "runs" / "quickstart" / "config.yaml"))
    assert saved["root"] == TINY["root"] and saved["out"] == "runs/quickstart"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run("evaluate", work / "runs" / "quickstart", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "test: 50 molecules" in proc.stdout


def test_shipped_yaml_files_use_the_nested_form():
    """Configs, study specs and sweep files set a filter's options under
    ``filter``, never as the old flat keys (which still load: tests above)."""
    import glob

    from pyg_schnet.run.config import LEGACY_FILTER_KEYS

    paths = [  # what the repository ships; run directories are records, left as written
        p
        for pattern in (
            "pyg_schnet/configs",
            "experiments/configs",
            "experiments/sweeps",
            "experiments/studies",
        )
        for p in glob.glob(osp.join(REPO, pattern, "*.yaml"))
    ]
    assert len(paths) >= 13

    def mappings(doc):
        yield doc
        for key in ("base", "quick", "parameters"):
            if isinstance(doc.get(key), dict):
                yield doc[key]
        for key in ("variants", "size_overrides"):
            for value in (doc.get(key) or {}).values():
                if isinstance(value, dict):
                    yield value

    flat = [
        (osp.relpath(p, REPO), k)
        for p in paths
        for m in mappings(yaml.safe_load(open(p)) or {})
        for k in m
        if k in LEGACY_FILTER_KEYS
    ]
    assert not flat, flat


def test_a_key_set_twice_in_a_file_is_refused(tmp_path):
    """YAML lets the last of two equal keys win in silence; a config may not."""
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.1\nepochs: 3\nlr: 0.0002\n")
    with pytest.raises(UserError, match=r"sets 'lr' twice \(line 3\)"):
        load_config(str(p))
    p.write_text("filter: {name: conv1d, num_bins: 5, num_bins: 7}\n")
    with pytest.raises(UserError, match="sets 'num_bins' twice"):
        load_config(str(p))


def test_a_key_spelled_two_ways_is_refused(tmp_path):
    """``batch-size`` is ``batch_size``: a file that sets both sets one key
    twice (the last used to win in silence, as with YAML's own duplicates)."""
    p = tmp_path / "c.yaml"
    p.write_text("batch_size: 10\nepochs: 3\nbatch-size: 20\n")
    with pytest.raises(
        UserError, match=r"sets 'batch_size' twice \(as 'batch_size' and 'batch-size'\)"
    ):
        load_config(str(p))


def test_yaml_limits():
    """Every YAML read from a user goes through ``load_yaml``: an alias bomb or
    a self-referencing alias is refused before anything is built from it;
    ordinary aliases and merge keys still load."""
    from pyg_schnet.run.config import MAX_YAML_VALUES, load_yaml

    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )  # 10**9 values
    for text in (bomb, "lr: &a [1, *a]\n"):
        with pytest.raises(yaml.YAMLError):
            load_yaml(text)
    fine = "base: &b {lr: 0.1, epochs: 3}\nother: {<<: *b, epochs: 4}\nlist: [*b, *b]\n"
    assert load_yaml(fine)["other"] == {"lr": 0.1, "epochs": 4}
    # 90,000 values through aliases: under the limit, loads (the count is of the expansion)
    ok = f"a: &a [{', '.join(['1'] * 1000)}]\nb: [{', '.join(['*a'] * 90)}]\n"
    assert sum(map(len, load_yaml(ok)["b"])) == 90_000 < MAX_YAML_VALUES


@pytest.mark.parametrize(
    "overrides, fast",
    [
        ({}, True),  # the default: the fast mode of the models that have one
        ({"model": "painn"}, True),
        ({"model": "visnet"}, False),
        ({"fast": False}, False),  # the exact reference, one flag away
        ({"model": "visnet", "fast": False}, False),
    ],
)
def test_the_fast_mode_is_the_default_where_a_model_has_one(overrides, fast):
    cfg = load_config(None, {**overrides, "hidden_channels": 16, "num_interactions": 1})
    assert cfg.fast is fast
    assert cfg.to_dict()["fast"] is fast  # the saved config states the mode


def test_the_fast_mode_is_refused_for_a_model_without_one():
    with pytest.raises(UserError, match="fast applies to model schnet and painn only"):
        load_config(None, {"model": "visnet", "fast": True})
