"""The mechanism study's controls: the rounding modes of every radial filter
(bins, shifted bins, noise, dither, a discrete envelope), the non-local bases
(Fourier, Bessel, random Fourier) and the coordinate filter with a basis."""

import math

import pytest
import torch

from pyg_schnet.errors import UserError
from pyg_schnet.nn.fast import FilterTable
from pyg_schnet.nn.filters import FILTERS, RadialFilter, make_filter
from pyg_schnet.nn.rotations import random_rotation

RADIAL = sorted(n for n in FILTERS if issubclass(FILTERS.cls(n), RadialFilter))
#: distances on either side of the edges of 0.1 Å bins and of bins shifted by half
D = torch.tensor([1.049, 1.051, 1.099, 1.101, 1.149, 1.151])


def _pair(**opts):
    """A plain Gaussian filter and one with ``opts``, the same weights."""
    torch.manual_seed(0)
    plain = make_filter("gaussian", num_filters=8, cutoff=5.0)
    other = make_filter("gaussian", num_filters=8, cutoff=5.0, **opts)
    other.load_state_dict(plain.state_dict())
    return plain.eval(), other.eval()


def test_floor_and_shifted_bins_see_their_bin_centres():
    _, floor = _pair(distance_bin_width=0.1)
    _, shifted = _pair(distance_bin_width=0.1, rounding="shifted")
    seen_floor = floor.network_distance(D, floor.bins())
    seen_shifted = shifted.network_distance(D, shifted.bins())
    # floor: edges at 1.0, 1.1, 1.2 (multiples of the width), centres 1.05, 1.15
    torch.testing.assert_close(seen_floor, torch.tensor([1.05, 1.05, 1.05, 1.15, 1.15, 1.15]))
    # shifted: edges at 1.05, 1.15, centres at the multiples 1.0, 1.1, 1.2
    torch.testing.assert_close(seen_shifted, torch.tensor([1.0, 1.1, 1.1, 1.1, 1.1, 1.2]))


@pytest.mark.parametrize("name", RADIAL)
def test_every_rounding_keeps_the_error_within_half_a_bin(name):
    d = torch.linspace(0.5, 4.9, 2001)
    for rounding in RadialFilter.ROUNDINGS:
        if name == "conv1d" and rounding == "noise":
            continue  # refused, tested below
        f = make_filter(name, num_filters=4, cutoff=5.0, distance_bin_width=0.2, rounding=rounding)
        f.train()
        bins = f.bins()
        err = (f.network_distance(d, bins) - d).abs().max()
        assert float(err) <= 0.1 + 1e-5, (rounding, float(err))


def test_noise_is_uniform_half_a_bin_in_training_and_evaluation():
    _, f = _pair(distance_bin_width=0.1, rounding="noise")
    d = torch.full((20000,), 2.0)
    for mode in (True, False):
        f.train(mode)
        assert f.bins() is None
        err = f.network_distance(d, None) - d
        assert float(err.abs().max()) <= 0.05 + 1e-6
        assert abs(float(err.mean())) < 2e-3 and float(err.std()) == pytest.approx(
            0.1 / math.sqrt(12), rel=0.05
        )
    torch.manual_seed(3)
    a = f(torch.zeros(6, 3), D)
    torch.manual_seed(3)
    b = f(torch.zeros(6, 3), D)
    assert torch.equal(a, b) and not torch.equal(a, f(torch.zeros(6, 3), D))


def test_dither_moves_the_bins_in_training_and_is_exact_in_evaluation():
    plain, f = _pair(distance_bin_width=0.1, rounding="dither")
    f.train()
    offsets = {f.bins()[1] for _ in range(20)}
    assert len(offsets) == 20 and all(0 <= o < 1 for o in offsets)
    assert f.step_width == 0.0  # evaluation is continuous
    f.eval()
    assert f.bins() is None
    with torch.no_grad():
        torch.testing.assert_close(f(torch.zeros(6, 3), D), plain(torch.zeros(6, 3), D))


def test_a_discrete_envelope_makes_the_filter_a_function_of_the_bin():
    _, smooth_env = _pair(distance_bin_width=0.1)
    _, discrete = _pair(distance_bin_width=0.1, discrete_envelope=True)
    inside = torch.tensor([2.101, 2.15, 2.199])  # one bin
    with torch.no_grad():
        w = discrete(torch.zeros(3, 3), inside)
        v = smooth_env(torch.zeros(3, 3), inside)
    torch.testing.assert_close(w[0], w[2])
    assert not torch.allclose(v[0], v[2])  # the true distance's envelope varies in the bin
    torch.testing.assert_close(w[1], v[1])  # at the centre the two agree


@pytest.mark.parametrize(
    "opts",
    [
        {"rounding": "round"},
        {"discrete_envelope": True},
        {"distance_bin_width": 0.1, "rounding": "noise", "discrete_envelope": True},
        {"distance_bin_width": 0.1, "rounding": "dither", "discrete_envelope": True},
    ],
)
def test_bad_rounding_settings_are_refused(opts):
    with pytest.raises(UserError):
        make_filter("gaussian", num_filters=4, cutoff=5.0, **opts)


def test_conv1d_refuses_noise():
    with pytest.raises(UserError, match="conv1d"):
        make_filter("conv1d", num_filters=4, cutoff=5.0, distance_bin_width=0.1, rounding="noise")


@pytest.mark.parametrize("opts", [{"rounding": "shifted"}, {"discrete_envelope": True}])
def test_the_table_is_exact_for_shifted_and_discrete_bins(opts):
    _, f = _pair(distance_bin_width=0.1, **opts)
    d = torch.linspace(0.0, 5.0, 5001)
    with torch.no_grad():
        torch.testing.assert_close(FilterTable()(f, d), f(torch.zeros(len(d), 3), d))


def test_the_table_interpolates_at_the_noisy_distance():
    _, f = _pair(distance_bin_width=0.1, rounding="noise")
    d = torch.linspace(0.5, 5.0, 3001)
    with torch.no_grad():
        torch.manual_seed(7)
        table = FilterTable()(f, d)
        torch.manual_seed(7)
        exact = f(torch.zeros(len(d), 3), d)
    assert float((table - exact).abs().max()) < 1e-3 * float(exact.abs().max())


def test_fourier_and_bessel_resolve_what_their_gaussians_would():
    """Their fastest features have the half period of the Gaussians' spacing."""
    fourier = make_filter("fourier", num_filters=8, cutoff=5.0)  # 25 frequencies, 50 features
    bessel = make_filter("bessel", num_filters=8, cutoff=5.0)  # 50 radial functions
    gauss = make_filter("gaussian", num_filters=8, cutoff=5.0)  # 50 centres
    count = [sum(p.numel() for p in f.parameters()) for f in (fourier, bessel, gauss)]
    assert count[0] == count[1] == count[2]
    assert math.pi / float(fourier.frequency[-1]) == pytest.approx(0.1)  # half period, Å
    assert 5.0 / float(bessel.n[-1]) == pytest.approx(0.1)


def test_bessel_is_dimenets_basis_and_finite_at_zero():
    f = make_filter("bessel", num_filters=4, cutoff=5.0, num_radial=6)
    d = torch.tensor([0.0, 0.7, 2.3])
    n = torch.arange(1, 7, dtype=torch.float32)
    expected = math.sqrt(2 / 5.0) * torch.sin(n * math.pi * d[1:, None] / 5.0) / d[1:, None]
    x = d.unsqueeze(-1) * f.n / f.cutoff
    got = torch.sinc(x) * f.n * (math.sqrt(2 / 5.0) * math.pi / 5.0)
    torch.testing.assert_close(got[1:], expected)
    torch.testing.assert_close(got[0], math.sqrt(2 / 5.0) * n * math.pi / 5.0)


def test_random_fourier_features_are_fixed_by_their_seed_and_saved():
    a = make_filter("random_fourier", num_filters=4, cutoff=5.0)
    b = make_filter("random_fourier", num_filters=4, cutoff=5.0)
    c = make_filter("random_fourier", num_filters=4, cutoff=5.0, feature_seed=1)
    assert torch.equal(a.omega, b.omega) and not torch.equal(a.omega, c.omega)
    assert {"omega", "phase"} <= {k.rsplit(".", 1)[-1] for k in a.state_dict()}
    assert not any(p is a.omega for p in a.parameters())  # fixed, not trained
    # frequencies of a 0.1 Å kernel: standard deviation 10 per Å
    big = make_filter("random_fourier", num_filters=4, cutoff=5.0, num_features=20000)
    assert float(big.omega.std()) == pytest.approx(10.0, rel=0.03)


def test_coords_basis_has_a_basis_and_no_rotation_invariance():
    f = make_filter("coords_basis", num_filters=8, cutoff=5.0, num_gaussians=20)
    assert not f.radial and f.mlp[0].in_features == 60
    gen = torch.Generator().manual_seed(0)
    vec = torch.randn(30, 3, generator=gen)
    rot = random_rotation(torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = f(vec, vec.norm(dim=-1))
        b = f(vec @ rot.T, vec.norm(dim=-1))
        swapped = f(vec[:, [1, 0, 2]], vec.norm(dim=-1))
    assert (a - b).abs().max() > 1e-2 * a.abs().max()
    assert (a - swapped).abs().max() > 1e-2 * a.abs().max()  # a component is not a distance


def test_scaled_steps_store_the_same_filter_in_other_units():
    """distance_scaled with scaled_steps: the same function at the start, the
    second layer stored in units of s / rc (so Adam's steps move it less)."""
    torch.manual_seed(0)
    plain = make_filter("distance_scaled", num_filters=8, cutoff=5.0)
    torch.manual_seed(0)
    scaled = make_filter("distance_scaled", num_filters=8, cutoff=5.0, scaled_steps=True)
    d = torch.linspace(0.5, 5.0, 50)
    with torch.no_grad():
        torch.testing.assert_close(scaled(torch.zeros(50, 3), d), plain(torch.zeros(50, 3), d))
    ratio = scaled.mlp[2].weight.abs().mean() / plain.mlp[2].weight.abs().mean()
    assert float(ratio) == pytest.approx(5.0 / 0.1)


def test_shifted_softplus_slope_in_one_pass_and_its_second_derivative():
    """SchNet's activation with a gradient: the floor's output, the slope of the
    floored input (sigmoid(-18) below the floor, not 0, and never denormal),
    and with create_graph second derivatives as autograd's own formula gives."""
    from pyg_schnet.nn.filters import SOFTPLUS_FLOOR, ShiftedSoftplus

    act = ShiftedSoftplus()
    x = torch.tensor([-200.0, -30.0, -18.5, -17.0, -2.0, 0.0, 3.0, 25.0], requires_grad=True)
    y = act(x)
    ref = torch.nn.functional.softplus(x.detach().clamp(min=SOFTPLUS_FLOOR)) - math.log(2.0)
    assert torch.equal(y.detach(), ref)
    (grad,) = torch.autograd.grad(y.sum(), x)
    slope = torch.sigmoid(x.detach().clamp(min=SOFTPLUS_FLOOR))
    torch.testing.assert_close(grad, slope)
    assert (grad[:3] > 0).all() and (grad[:3] >= torch.finfo(torch.float32).tiny).all()
    # second derivatives (float64 away from the floor's kink): against the formula's autograd
    x64 = torch.linspace(-10.0, 10.0, 41, dtype=torch.float64, requires_grad=True)

    def second(f):
        (g,) = torch.autograd.grad(f(x64).pow(2).sum(), x64, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), x64)
        return g.detach(), h

    for ours, formula in zip(
        second(act),
        second(lambda t: torch.nn.functional.softplus(t) - math.log(2.0)),
        strict=True,
    ):
        torch.testing.assert_close(ours, formula)
    assert torch.autograd.gradgradcheck(act, (x64[::8].detach().requires_grad_(True),))
