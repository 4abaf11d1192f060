"""Edge filters for the continuous-filter convolution, swappable by name.

Every filter has one interface: ``filter(edge_vec, dist) -> W`` with edge
vectors ``r_j - r_i`` ``[E, 3]`` and distances ``[E]`` in, filter weights
``[E, num_filters]`` out. A filter owns its cutoff, which the model also uses
for the radius graph (one source of truth).

Radial filters (:class:`RadialFilter`: ``gaussian``, ``distance``, ``conv1d``
and the controls ``distance_scaled``, ``distance_deep``, ``fourier``,
``bessel``, ``random_fourier``) are a learned function of the distance times
a cosine envelope and take the rounding controls ``distance_bin_width``,
``rounding`` and ``discrete_envelope``; ``coords`` and ``coords_basis`` are
not radial.
Adding a filter means one class with a ``name`` and one :data:`FILTERS` entry:
its constructor arguments other than ``num_filters`` and ``cutoff`` become its
config options (``filter: {name: ..., option: ...}``, ``--filter.option``),
typed by their annotations, described by its ``Args:`` docstring and checked
by the constructor, which raises :class:`~pyg_schnet.errors.UserError`.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyg_schnet.errors import UserError
from pyg_schnet.registry import Registry


#: Inputs of :class:`ShiftedSoftplus` are raised to this floor: below -17.33
#: its float32 output is exactly :math:`-\ln 2` and its slope :math:`e^x`
#: under float32's resolution, while below -87.3 softplus and its gradient
#: are float32 denormals (slow on x86 CPUs without flushing).
SOFTPLUS_FLOOR = -18.0
#: Gaussians of the radial basis below this value (:math:`2^{-100}`, at
#: exponents below -69.3) are exactly 0: their products with weights and
#: gradients would be float32 denormals, and their share of any output is far
#: below float32's resolution.
BASIS_ZERO = 2.0**-100


def shifted_softplus(x: Tensor) -> Tensor:
    r""":math:`\ln(1 + e^x) - \ln 2` of ``x`` raised to :data:`SOFTPLUS_FLOOR`,
    out of place (what :class:`ShiftedSoftplus` computes when a gradient is
    needed; the fast mode's compiled coordinate filters call it too)."""
    # in place on softplus' output: its backward needs only the input
    return F.softplus(x.clamp(min=SOFTPLUS_FLOOR)).sub_(math.log(2.0))


class _FlooredSoftplus(torch.autograd.Function):
    """:func:`shifted_softplus` with one backward pass instead of two: the slope
    at the floored input, ``sigmoid(max(x, floor))``, without the floor's mask
    (below the floor the slope is ``sigmoid(-18)`` = 1.5e-8 instead of 0;
    neither is denormal). The mask's pass cost 3-4% of a fast-mode training
    step at the shipped models' size and 10-15% of an exact ``coords`` step
    (docs/speed.md, "Denormals"). With ``create_graph`` the slope is built from
    differentiable operations, so second derivatives hold."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        floored = x.clamp(min=SOFTPLUS_FLOOR)
        ctx.save_for_backward(x, floored)
        return F.softplus(floored).sub_(math.log(2.0))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        x, floored = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiable in x and grad
            return grad * torch.sigmoid(x.clamp(min=SOFTPLUS_FLOOR))
        return torch.ops.aten.softplus_backward(grad, floored, 1.0, 20.0)


class ShiftedSoftplus(nn.Module):
    r""":math:`\ln(1 + e^x) - \ln 2`, SchNet's activation (zero at zero).
    Inputs below :data:`SOFTPLUS_FLOOR` count as the floor (the same output;
    below it the slope is the floor's, :math:`\sigma(-18) \approx 1.5 \cdot
    10^{-8}`, where the unfloored one would reach float32's denormals).

    Args:
        inplace (bool): When no gradient is needed, overwrite the input
            instead of allocating the output (on CPU the allocation of a large
            tensor costs more than the softplus); only for inputs nobody else
            reads, such as a layer's fresh output. (default: :obj:`False`)
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.shift = math.log(2.0)
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace and not (torch.is_grad_enabled() and x.requires_grad):
            x = x.clamp_(min=SOFTPLUS_FLOOR)
            return torch._C._nn.softplus(x, 1, 20, out=x).sub_(self.shift)  # type: ignore[call-arg]
        if torch.is_grad_enabled() and x.requires_grad:
            out: Tensor = _FlooredSoftplus.apply(x)
            return out
        return shifted_softplus(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class CosineCutoff(nn.Module):
    r"""Envelope :math:`\frac12(\cos(\pi d / r_c) + 1)` for :math:`d \le r_c`,
    zero beyond, so filters go smoothly to zero at the cutoff."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, dist: Tensor) -> Tensor:
        env = 0.5 * (torch.cos(dist * (math.pi / self.cutoff)) + 1.0)
        return env * (dist <= self.cutoff).to(dist.dtype)


class GaussianSmearing(nn.Module):
    r"""Gaussian radial basis :math:`\exp(-\frac{(d - \mu_k)^2}{2 w^2})` with
    ``num_gaussians`` centres evenly spaced on ``[start, stop]``.

    Args:
        start (float): First centre. (default: :obj:`0.0`)
        stop (float): Last centre (the cutoff). (default: :obj:`10.0`)
        num_gaussians (int): Number of centres. (default: :obj:`50`)
        width (float, optional): Gaussian width; the centre spacing when
            :obj:`None` (PyG's choice). (default: :obj:`None`)
    """

    def __init__(
        self,
        start: float = 0.0,
        stop: float = 10.0,
        num_gaussians: int = 50,
        width: Optional[float] = None,
    ) -> None:
        super().__init__()
        offset = torch.linspace(start, stop, num_gaussians)
        if width is None:
            if num_gaussians < 2:
                width = 1.0
            elif offset.is_meta:  # a model built to count its parameters, never run
                width = (stop - start) / (num_gaussians - 1)
            else:  # the float32 spacing, as PyG
                width = float(offset[1] - offset[0])
        self.coeff = -0.5 / float(width) ** 2
        self.offset: Tensor
        self.register_buffer("offset", offset)

    def forward(self, dist: Tensor) -> Tensor:
        d = dist.view(-1, 1) - self.offset.view(1, -1)  # [E, num_gaussians]
        # below exp(-87) float32 is denormal, and exp slow: clamp there, then
        # values below BASIS_ZERO (the clamped ones among them) to exactly 0
        if d.requires_grad:  # forces: keep the autograd graph
            g = torch.exp((self.coeff * d.pow(2)).clamp(min=-87.0))
            return F.threshold(g, BASIS_ZERO, 0.0)
        g = d.square_().mul_(self.coeff).clamp_(min=-87.0).exp_()
        return torch.threshold_(g, BASIS_ZERO, 0.0)


class EdgeFilter(nn.Module):
    """Base class: maps edges to filter weights ``[E, num_filters]``.

    Subclasses set ``name``, build their layers in ``__init__`` (keeping their
    constructor arguments in ``self.hparams`` so they can be rebuilt) and
    implement :meth:`forward`.
    """

    name: str = ""
    #: True when the filter depends on the distance only (rotation-invariant).
    radial: bool = True

    def __init__(self, num_filters: int, cutoff: float) -> None:
        super().__init__()
        if not (math.isfinite(cutoff) and cutoff > 0):
            raise UserError(f"cutoff must be a positive number of Å, got {cutoff}")
        if num_filters < 1:
            raise UserError(f"num_filters must be at least 1, got {num_filters}")
        self.num_filters = int(num_filters)
        self.cutoff = float(cutoff)
        self.envelope = CosineCutoff(cutoff)
        self.hparams: Dict[str, Any] = {}

    def forward(self, edge_vec: Tensor, dist: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d)):
                m.reset_parameters()
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.hparams.items())


def _mlp(in_features: int, num_filters: int) -> nn.Sequential:
    """SchNet's filter-generating network: dense, shifted softplus, dense."""
    return nn.Sequential(
        nn.Linear(in_features, num_filters),
        ShiftedSoftplus(inplace=True),
        nn.Linear(num_filters, num_filters),
    )


def mlp_layers(mlp: nn.Sequential) -> Tuple[nn.Linear, nn.Linear]:
    """The two dense layers of a filter network built by :func:`_mlp`."""
    return cast(nn.Linear, mlp[0]), cast(nn.Linear, mlp[2])


class RadialFilter(EdgeFilter):
    r"""Base class of filters that depend on the distance only (rotation-invariant).

    A radial filter is ``network(d) * envelope(d)``: a learned function of the
    distance, :meth:`network`, times the cosine cutoff envelope.

    ``distance_bin_width`` :math:`w > 0` is a rounding control: the network
    sees a distance :math:`w` has made coarse, as ``rounding`` says:

    * ``floor``: the centre of the distance's bin, :math:`(\lfloor d / w
      \rfloor + \frac12) w` (bin edges at whole multiples of :math:`w`);
    * ``shifted``: the same bins moved by half a width (edges at
      :math:`(k + \frac12) w`, centres at whole multiples);
    * ``noise``: no bins; :math:`d + u` with :math:`u` uniform on
      :math:`[-w/2, w/2]`, drawn per pair and pass, in training and
      evaluation (the same size of error as rounding, not tied to a grid);
    * ``dither``: in training, bins whose edges move by a random fraction of
      :math:`w` each pass (one draw per filter and pass); in evaluation the
      exact distance.

    The envelope takes the true distance, so the filter still vanishes
    smoothly at the cutoff, unless ``discrete_envelope`` is set (``floor`` or
    ``shifted`` only): then it takes the bin centre too and the whole filter
    is a function of the bin (fully discrete).

    Subclasses implement :meth:`network` and state :attr:`feature_width`, the
    narrowest feature of their network in Å (the tabulated fast mode,
    :class:`pyg_schnet.nn.fast.FilterTable`, sizes its grid from it).

    Args:
        num_filters (int): Filter width.
        cutoff (float): Cutoff in Å.
        distance_bin_width (float): Rounding width in Å, 0 for none.
            (default: :obj:`0.0`)
        rounding (str): How the width is applied: ``floor``, ``shifted``,
            ``noise`` or ``dither``. (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    radial = True
    #: The ways ``distance_bin_width`` is applied (see the class docstring).
    ROUNDINGS = ("floor", "shifted", "noise", "dither")

    def __init__(
        self,
        num_filters: int,
        cutoff: float,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        super().__init__(num_filters, cutoff)
        if not (math.isfinite(distance_bin_width) and 0.0 <= distance_bin_width < cutoff):
            raise UserError(
                f"distance_bin_width must be 0 (off) or between 0 and the cutoff "
                f"({cutoff} Å), got {distance_bin_width}"
            )
        if rounding not in self.ROUNDINGS:
            raise UserError(
                f"rounding must be one of {', '.join(self.ROUNDINGS)}, got {rounding!r}"
            )
        if discrete_envelope and not (distance_bin_width > 0 and rounding in ("floor", "shifted")):
            raise UserError(
                "discrete_envelope needs distance bins: a distance_bin_width above 0 "
                "and rounding floor or shifted"
            )
        self.distance_bin_width = float(distance_bin_width)
        self.rounding = rounding
        self.discrete_envelope = bool(discrete_envelope)

    def _rounding_hparams(self) -> Dict[str, Any]:
        return dict(
            distance_bin_width=self.distance_bin_width,
            rounding=self.rounding,
            discrete_envelope=self.discrete_envelope,
        )

    @property
    def feature_width(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def step_width(self) -> float:
        """Width in Å of the distance bins on which the filter is constant in
        evaluation (0 when it is continuous there): the rounding width, else
        the filter's own discreteness."""
        bins = self.bins(training=False)
        return bins[0] if bins is not None else 0.0

    def bins(self, training: Optional[bool] = None) -> Optional[Tuple[float, float]]:
        r"""``(width, offset)`` of the bins the network is constant on in a
        pass (edges at :math:`(k + \mathrm{offset})\,\mathrm{width}`), or
        :obj:`None` when it sees a continuous distance. With ``dither`` in
        training each call draws a new offset: call it once per pass."""
        training = self.training if training is None else training
        w, mode = self.distance_bin_width, self.rounding
        if w == 0.0 or mode == "noise" or (mode == "dither" and not training):
            return None
        if mode == "dither":
            return w, float(torch.rand(()))
        return w, (0.5 if mode == "shifted" else 0.0)

    def network_distance(self, dist: Tensor, bins: Optional[Tuple[float, float]]) -> Tensor:
        """The distance the network sees ``[E]``: the bin centre for
        ``bins`` (from :meth:`bins`), the noisy distance with ``noise``."""
        if bins is not None:
            w, offset = bins
            return (torch.floor(dist.detach() / w - offset) + (offset + 0.5)) * w
        if self.rounding == "noise" and self.distance_bin_width > 0:
            u = torch.rand_like(dist) - 0.5  # [E], uniform on [-1/2, 1/2]
            return (dist + u * self.distance_bin_width).clamp(0.0, self.cutoff)
        return dist

    def network(self, dist: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The learned part ``[E, num_filters]`` at distances ``[E]``."""
        raise NotImplementedError

    def forward(self, edge_vec: Tensor, dist: Tensor) -> Tensor:
        x = self.network_distance(dist, self.bins())
        envelope = self.envelope(x if self.discrete_envelope else dist)
        # the network's output is fresh: scale it in place
        return self.network(x).mul_(envelope.unsqueeze(-1))


class GaussianFilter(RadialFilter):
    r"""The original SchNet filter: Gaussian expansion of the distance, an MLP
    and a cosine cutoff envelope (`Schütt et al. 2017
    <https://arxiv.org/abs/1706.08566>`_).

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å; last Gaussian centre and envelope zero.
            (default: :obj:`10.0`)
        num_gaussians (int): Number of Gaussians. (default: :obj:`50`)
        rbf_start (float): First Gaussian centre. (default: :obj:`0.0`)
        rbf_width (float, optional): Gaussian width, centre spacing when
            :obj:`None`. (default: :obj:`None`)
        distance_bin_width (float): Rounding width in Å, 0 for none
            (see :class:`RadialFilter`). (default: :obj:`0.0`)
        rounding (str): ``floor``, ``shifted``, ``noise`` or ``dither``
            (see :class:`RadialFilter`). (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    name = "gaussian"

    def __init__(
        self,
        num_filters: int = 128,
        cutoff: float = 10.0,
        num_gaussians: int = 50,
        rbf_start: float = 0.0,
        rbf_width: Optional[float] = None,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        super().__init__(num_filters, cutoff, distance_bin_width, rounding, discrete_envelope)
        if num_gaussians < 2:
            raise UserError(f"num_gaussians must be at least 2, got {num_gaussians}")
        if not (math.isfinite(rbf_start) and rbf_start < cutoff):
            raise UserError(f"rbf_start must be below the cutoff ({cutoff} Å), got {rbf_start}")
        if rbf_width is not None and not (math.isfinite(rbf_width) and rbf_width > 0):
            raise UserError(f"rbf_width must be positive (or none), got {rbf_width}")
        self.hparams = dict(
            num_filters=num_filters,
            cutoff=cutoff,
            num_gaussians=num_gaussians,
            rbf_start=rbf_start,
            rbf_width=rbf_width,
            **self._rounding_hparams(),
        )
        self.basis = GaussianSmearing(rbf_start, cutoff, num_gaussians, rbf_width)
        self.mlp = _mlp(num_gaussians, num_filters)
        self.reset_parameters()

    @property
    def feature_width(self) -> float:
        return (-0.5 / self.basis.coeff) ** 0.5  # the Gaussians' width

    def network(self, dist: Tensor) -> Tensor:
        return self.mlp(self.basis(dist))  # [E, num_filters]


class DistanceFilter(RadialFilter):
    r"""A control: the distance, scaled by the cutoff (:math:`d / r_c \in
    [0, 1]`), goes straight into the filter MLP, with no radial basis.
    Continuous and rotation-invariant like :class:`GaussianFilter`; it differs
    from it by the Gaussian expansion only.

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        distance_bin_width (float): Rounding width in Å, 0 for none
            (see :class:`RadialFilter`). (default: :obj:`0.0`)
        rounding (str): ``floor``, ``shifted``, ``noise`` or ``dither``
            (see :class:`RadialFilter`). (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    name = "distance"
    #: Narrowest feature, as a fraction of the cutoff, that the fast mode
    #: resolves: a unit ``softplus(a d / r_c + b)`` bends over ``r_c / |a|``,
    #: and first-layer weights start at ``|a| < 0.5``; this allows ``|a|`` of 25.
    FEATURE_FRACTION = 1.0 / 25.0

    def __init__(
        self,
        num_filters: int = 128,
        cutoff: float = 10.0,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        super().__init__(num_filters, cutoff, distance_bin_width, rounding, discrete_envelope)
        self.hparams = dict(num_filters=num_filters, cutoff=cutoff, **self._rounding_hparams())
        self.mlp = _mlp(1, num_filters)
        self.reset_parameters()

    @property
    def feature_width(self) -> float:
        return self.cutoff * self.FEATURE_FRACTION

    def network(self, dist: Tensor) -> Tensor:
        return self.mlp((dist / self.cutoff).unsqueeze(-1))  # [E, num_filters]


class ScaledDistanceFilter(DistanceFilter):
    r"""A control for conditioning: :class:`DistanceFilter` with the distance
    in units of ``input_scale`` (:math:`x = d / s`, default 0.1 Å, the
    Gaussians' spacing, so :math:`x \in [0, r_c / s]`) and a first layer
    whose softplus kinks are initialised to tile the range: unit :math:`k`
    starts as :math:`\mathrm{ssp}(\pm(x - x_k))` with the :math:`x_k` evenly
    spaced on :math:`[0, r_c / s]` and alternating signs, where
    :class:`DistanceFilter`'s zero biases put every kink at 0 Å and its
    :math:`d / r_c` input leaves each unit nearly linear over the cutoff. The
    second layer starts at its usual init times :math:`s / r_c`, which keeps
    the filter's initial values of the order of :class:`GaussianFilter`'s
    (their standard deviation over 0.5-5 Å was 3x the Gaussian filter's at 64
    filters and a 5 Å cutoff, against 1/3 for :class:`DistanceFilter`). The same
    layers and parameters as :class:`DistanceFilter`: only the input's scale
    and the first layer's initialisation differ.

    With ``scaled_steps`` the second layer's weights are stored divided by
    :math:`s / r_c` and multiplied back in the forward pass: the same function
    at the start, but Adam, whose step is about the learning rate per weight
    whatever the weight's scale, then moves them :math:`s / r_c` as far per
    step. Without it the hidden units, ramps up to :math:`r_c / s` high, make
    one step change the filter by up to :math:`r_c / s` times more than a
    bounded basis does (the mechanism study's run diverged at its second
    epoch).

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        input_scale (float): The distance unit of the input in Å.
            (default: :obj:`0.1`)
        scaled_steps (bool): Store the second layer's weights in units of
            :math:`s / r_c`. (default: :obj:`False`)
        distance_bin_width (float): Rounding width in Å, 0 for none
            (see :class:`RadialFilter`). (default: :obj:`0.0`)
        rounding (str): ``floor``, ``shifted``, ``noise`` or ``dither``
            (see :class:`RadialFilter`). (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    name = "distance_scaled"
    #: Growth of the first layer's slopes, over their initial 1 per
    #: ``input_scale``, that the fast mode's table resolves (its grid has
    #: POINTS_PER_FEATURE points per ``input_scale / SLOPE_GROWTH``).
    SLOPE_GROWTH = 5.0
    # set per instance; here for the base class's first init
    input_scale: float = 0.1
    scaled_steps: bool = False

    def __init__(
        self,
        num_filters: int = 128,
        cutoff: float = 10.0,
        input_scale: float = 0.1,
        scaled_steps: bool = False,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        if not (math.isfinite(input_scale) and 0 < input_scale < cutoff):
            raise UserError(
                f"input_scale must be a positive number of Å below the cutoff ({cutoff} Å), "
                f"got {input_scale}"
            )
        super().__init__(num_filters, cutoff, distance_bin_width, rounding, discrete_envelope)
        self.input_scale = float(input_scale)
        self.scaled_steps = bool(scaled_steps)
        self.hparams = dict(
            num_filters=num_filters,
            cutoff=cutoff,
            input_scale=input_scale,
            scaled_steps=scaled_steps,
            **self._rounding_hparams(),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        first, second = self.mlp[0], self.mlp[2]
        assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
        n = first.out_features
        with torch.no_grad():
            sign = torch.ones(n)
            sign[1::2] = -1.0  # rising and falling units in turn
            kinks = torch.linspace(0.0, self.cutoff / self.input_scale, n)  # [n], input units
            first.weight.copy_(sign.view(n, 1))
            first.bias.copy_(-sign * kinks)
            if not self.scaled_steps:  # else the forward pass applies the factor
                second.weight.mul_(self.weight_unit)

    @property
    def weight_unit(self) -> float:
        """:math:`s / r_c`: the second layer's initial scale."""
        return self.input_scale / self.cutoff

    @property
    def feature_width(self) -> float:
        return self.input_scale / self.SLOPE_GROWTH

    def network(self, dist: Tensor) -> Tensor:
        x = (dist / self.input_scale).unsqueeze(-1)  # [E, 1]
        if not self.scaled_steps:
            return self.mlp(x)  # [E, num_filters]
        first, act, second = self.mlp
        assert isinstance(second, nn.Linear)
        return F.linear(act(first(x)), second.weight * self.weight_unit, second.bias)


class DeepDistanceFilter(DistanceFilter):
    r"""A control for capacity: :class:`DistanceFilter` (input :math:`d /
    r_c`, the same initialisation) with one more hidden layer, ``1 -> h -> h
    -> num_filters`` with shifted softplus between, where the width
    :math:`h` is chosen to give the filter network as many parameters as
    :class:`GaussianFilter`'s with ``match_gaussians`` Gaussians (within half
    a unit's worth), so the bare distance has the Gaussian filter's capacity.

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        match_gaussians (int): The Gaussian filter whose parameter count is
            matched. (default: :obj:`50`)
        distance_bin_width (float): Rounding width in Å, 0 for none
            (see :class:`RadialFilter`). (default: :obj:`0.0`)
        rounding (str): ``floor``, ``shifted``, ``noise`` or ``dither``
            (see :class:`RadialFilter`). (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    name = "distance_deep"

    def __init__(
        self,
        num_filters: int = 128,
        cutoff: float = 10.0,
        match_gaussians: int = 50,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        if match_gaussians < 2:
            raise UserError(f"match_gaussians must be at least 2, got {match_gaussians}")
        super().__init__(num_filters, cutoff, distance_bin_width, rounding, discrete_envelope)
        self.hparams = dict(
            num_filters=num_filters,
            cutoff=cutoff,
            match_gaussians=match_gaussians,
            **self._rounding_hparams(),
        )
        h = self.matched_width(num_filters, match_gaussians)
        self.mlp = nn.Sequential(
            nn.Linear(1, h),
            ShiftedSoftplus(inplace=True),
            nn.Linear(h, h),
            ShiftedSoftplus(inplace=True),
            nn.Linear(h, num_filters),
        )
        self.reset_parameters()

    @staticmethod
    def matched_width(num_filters: int, num_gaussians: int) -> int:
        """The hidden width whose network ``1 -> h -> h -> F`` has the
        parameter count nearest that of ``G -> F -> F``."""
        f, g = num_filters, num_gaussians
        target = (g + 1) * f + (f + 1) * f

        def count(h: int) -> int:
            return 2 * h + (h + 1) * h + (h + 1) * f

        return min(range(1, 4 * (f + g)), key=lambda h: (abs(count(h) - target), h))


class FourierFilter(RadialFilter):
    r"""A control for localisation: a non-local basis of as many features as
    the Gaussian filter's. The distance is expanded in sines and cosines,
    :math:`\sin(2\pi k d / r_c)` and :math:`\cos(2\pi k d / r_c)` for
    :math:`k = 1, \dots, K`, whose shortest half period :math:`r_c / (2K)`
    equals the spacing of :math:`2K` Gaussian centres (0.1 Å for the default
    25 frequencies on 5 Å against 50 centres); each feature spans the whole
    cutoff. Then the same MLP and envelope as :class:`GaussianFilter`.

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        num_frequencies (int): :math:`K`; the basis has :math:`2K` features.
            (default: :obj:`25`)
        distance_bin_width (float): Rounding width in Å, 0 for none
            (see :class:`RadialFilter`). (default: :obj:`0.0`)
        rounding (str): ``floor``, ``shifted``, ``noise`` or ``dither``
            (see :class:`RadialFilter`). (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    name = "fourier"

    def __init__(
        self,
        num_filters: int = 128,
        cutoff: float = 10.0,
        num_frequencies: int = 25,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        super().__init__(num_filters, cutoff, distance_bin_width, rounding, discrete_envelope)
        if num_frequencies < 1:
            raise UserError(f"num_frequencies must be at least 1, got {num_frequencies}")
        self.hparams = dict(
            num_filters=num_filters,
            cutoff=cutoff,
            num_frequencies=num_frequencies,
            **self._rounding_hparams(),
        )
        self.frequency: Tensor  # [K], angular, in 1/Å
        self.register_buffer(
            "frequency", torch.arange(1, num_frequencies + 1) * (2 * math.pi / cutoff)
        )
        self.mlp = _mlp(2 * num_frequencies, num_filters)
        self.reset_parameters()

    @property
    def feature_width(self) -> float:
        return 1.0 / float(self.frequency[-1])  # 1 / curvature scale of the fastest

    def network(self, dist: Tensor) -> Tensor:
        phase = dist.unsqueeze(-1) * self.frequency  # [E, K]
        return self.mlp(torch.cat([phase.sin(), phase.cos()], dim=-1))  # [E, num_filters]


class BesselFilter(RadialFilter):
    r"""A control for localisation: DimeNet's radial Bessel basis
    (`Gasteiger et al. 2020 <https://arxiv.org/abs/2003.03123>`_),
    :math:`\sqrt{2 / r_c}\,\sin(n \pi d / r_c) / d` for :math:`n = 1,
    \dots, N`, non-local like :class:`FourierFilter` but decaying as
    :math:`1/d`; the shortest half period :math:`r_c / N` equals the Gaussian
    centres' spacing at :math:`N` centres. Then the same MLP and envelope as
    :class:`GaussianFilter` (the envelope replaces DimeNet's polynomial one).

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        num_radial (int): :math:`N`. (default: :obj:`50`)
        distance_bin_width (float): Rounding width in Å, 0 for none
            (see :class:`RadialFilter`). (default: :obj:`0.0`)
        rounding (str): ``floor``, ``shifted``, ``noise`` or ``dither``
            (see :class:`RadialFilter`). (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    name = "bessel"

    def __init__(
        self,
        num_filters: int = 128,
        cutoff: float = 10.0,
        num_radial: int = 50,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        super().__init__(num_filters, cutoff, distance_bin_width, rounding, discrete_envelope)
        if num_radial < 1:
            raise UserError(f"num_radial must be at least 1, got {num_radial}")
        self.hparams = dict(
            num_filters=num_filters,
            cutoff=cutoff,
            num_radial=num_radial,
            **self._rounding_hparams(),
        )
        self.n: Tensor  # [N]
        self.register_buffer("n", torch.arange(1, num_radial + 1, dtype=torch.float32))
        self.mlp = _mlp(num_radial, num_filters)
        self.reset_parameters()

    @property
    def feature_width(self) -> float:
        return self.cutoff / (math.pi * float(self.n[-1]))

    def network(self, dist: Tensor) -> Tensor:
        # sin(n pi d / rc) / d = (n pi / rc) sinc(n d / rc): finite at d = 0
        x = dist.unsqueeze(-1) * self.n / self.cutoff  # [E, N]
        scale = math.sqrt(2.0 / self.cutoff) * math.pi / self.cutoff
        return self.mlp(torch.sinc(x) * (self.n * scale))  # [E, num_filters]


class RandomFourierFilter(RadialFilter):
    r"""A control for localisation: random Fourier features (`Rahimi and
    Recht 2007 <https://papers.nips.cc/paper/3182>`_),
    :math:`\sqrt{2 / D}\,\cos(\omega_k d + b_k)` with frequencies
    :math:`\omega_k \sim \mathcal{N}(0, 1/\ell^2)` and phases :math:`b_k
    \sim U[0, 2\pi)`, drawn once from ``feature_seed`` and kept as buffers.
    Their inner products approximate a Gaussian kernel of length
    :math:`\ell` (the Gaussian basis' width, 0.1 Å by default), but each
    feature spans the whole cutoff. Then the same MLP and envelope as
    :class:`GaussianFilter`.

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        num_features (int): :math:`D`. (default: :obj:`50`)
        length_scale (float): :math:`\ell` in Å. (default: :obj:`0.1`)
        feature_seed (int): Seed of the frequencies and phases.
            (default: :obj:`0`)
        distance_bin_width (float): Rounding width in Å, 0 for none
            (see :class:`RadialFilter`). (default: :obj:`0.0`)
        rounding (str): ``floor``, ``shifted``, ``noise`` or ``dither``
            (see :class:`RadialFilter`). (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    name = "random_fourier"

    def __init__(
        self,
        num_filters: int = 128,
        cutoff: float = 10.0,
        num_features: int = 50,
        length_scale: float = 0.1,
        feature_seed: int = 0,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        super().__init__(num_filters, cutoff, distance_bin_width, rounding, discrete_envelope)
        if num_features < 1:
            raise UserError(f"num_features must be at least 1, got {num_features}")
        if not (math.isfinite(length_scale) and 0 < length_scale < cutoff):
            raise UserError(
                f"length_scale must be a positive number of Å below the cutoff ({cutoff} Å), "
                f"got {length_scale}"
            )
        self.hparams = dict(
            num_filters=num_filters,
            cutoff=cutoff,
            num_features=num_features,
            length_scale=length_scale,
            feature_seed=feature_seed,
            **self._rounding_hparams(),
        )
        gen = torch.Generator().manual_seed(int(feature_seed))
        self.omega: Tensor  # [D], 1/Å
        self.phase: Tensor  # [D]
        self.register_buffer("omega", torch.randn(num_features, generator=gen) / length_scale)
        self.register_buffer("phase", torch.rand(num_features, generator=gen) * (2 * math.pi))
        self.mlp = _mlp(num_features, num_filters)
        self.reset_parameters()

    @property
    def feature_width(self) -> float:
        return 1.0 / float(self.omega.abs().max())

    def network(self, dist: Tensor) -> Tensor:
        x = torch.cos(dist.unsqueeze(-1) * self.omega + self.phase)  # [E, D]
        return self.mlp(x * math.sqrt(2.0 / self.omega.numel()))  # [E, num_filters]


class CoordsFilter(EdgeFilter):
    r"""The write-up's first modification: the raw coordinate difference
    :math:`\mathbf{r}_j - \mathbf{r}_i` goes into the filter MLP instead of the
    distance. Translation-invariant, *not* rotation-invariant (by design).

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å (envelope and graph). (default: :obj:`10.0`)
    """

    name = "coords"
    radial = False

    def __init__(self, num_filters: int = 128, cutoff: float = 10.0) -> None:
        super().__init__(num_filters, cutoff)
        self.hparams = dict(num_filters=num_filters, cutoff=cutoff)
        self.mlp = _mlp(3, num_filters)
        self.reset_parameters()

    def forward(self, edge_vec: Tensor, dist: Tensor) -> Tensor:
        return self.mlp(edge_vec).mul_(self.envelope(dist).unsqueeze(-1))


class CoordsBasisFilter(EdgeFilter):
    r"""A control for invariance with a basis present: each component of
    :math:`\mathbf{r}_j - \mathbf{r}_i` is expanded in ``num_gaussians``
    Gaussians evenly spaced on :math:`[-r_c, r_c]` (width their spacing, 0.2 Å
    for 50 on 5 Å; the resolution study found 0.2 Å Gaussians as good as
    0.1 Å ones for the distance), the three expansions are concatenated and
    go into the filter MLP, times the cosine envelope of the distance. It
    differs from :class:`CoordsFilter` by the basis and from
    :class:`GaussianFilter` by what is expanded (direction and distance
    rather than distance): translation-invariant, not rotation-invariant.

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å (envelope, graph, basis range).
            (default: :obj:`10.0`)
        num_gaussians (int): Gaussians per component. (default: :obj:`50`)
    """

    name = "coords_basis"
    radial = False

    def __init__(
        self, num_filters: int = 128, cutoff: float = 10.0, num_gaussians: int = 50
    ) -> None:
        super().__init__(num_filters, cutoff)
        if num_gaussians < 2:
            raise UserError(f"num_gaussians must be at least 2, got {num_gaussians}")
        self.hparams = dict(num_filters=num_filters, cutoff=cutoff, num_gaussians=num_gaussians)
        self.basis = GaussianSmearing(-cutoff, cutoff, num_gaussians)
        self.mlp = _mlp(3 * num_gaussians, num_filters)
        self.reset_parameters()

    @property
    def feature_width(self) -> float:
        """The Gaussians' width in Å (the fast mode's component tables are
        sampled from it)."""
        return (-0.5 / self.basis.coeff) ** 0.5

    def component_tables(self, values: Tensor) -> Tensor:
        """The first layer's weighted sum split by component ``[3, n,
        num_filters]``: row ``c`` at ``values`` ``[n]`` is what component ``c``
        of the edge vector contributes at that value (without the bias).
        The first layer is their sum over the three components."""
        g = self.basis(values)  # [n, G]
        w = mlp_layers(self.mlp)[0].weight  # [F, 3 * G], the components' blocks side by side
        # [F, 3, n] (so the weight's gradient comes out in its own layout), then [3, n, F]
        return torch.matmul(w.view(w.size(0), 3, -1), g.t()).permute(1, 2, 0).contiguous()

    def forward(self, edge_vec: Tensor, dist: Tensor) -> Tensor:
        x = self.basis(edge_vec.reshape(-1)).view(edge_vec.size(0), -1)  # [E, 3 * G]
        return self.mlp(x).mul_(self.envelope(dist).unsqueeze(-1))


class Conv1dFilter(RadialFilter):
    r"""The write-up's second modification: the distance is put into one of
    ``num_bins`` discrete bins on ``[0, cutoff)`` (a one-hot vector, no Gaussian
    smoothing) and 1D convolutions over the bin axis replace the radial basis
    before the dense layers.

    Because the output depends on the bin only, it is computed once per bin
    (``[num_bins, num_filters]``) and gathered per edge; this is exactly the
    per-edge result, at a fraction of the cost.

    Args:
        num_filters (int): Filter width. (default: :obj:`128`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        num_bins (int): Distance bins. (default: :obj:`50`)
        conv_channels (int): Channels of the convolutions. (default: :obj:`8`)
        kernel_size (int): Odd kernel size. (default: :obj:`5`)
        num_conv_layers (int): Convolution layers. (default: :obj:`2`)
        distance_bin_width (float): Extra rounding width in Å, 0 for none
            (the filter is already constant on its own bins).
            (default: :obj:`0.0`)
        rounding (str): ``floor``, ``shifted``, ``noise`` or ``dither``
            (see :class:`RadialFilter`). (default: :obj:`"floor"`)
        discrete_envelope (bool): The envelope on the bin centre too.
            (default: :obj:`False`)
    """

    name = "conv1d"

    def __init__(
        self,
        num_filters: int = 128,
        cutoff: float = 10.0,
        num_bins: int = 50,
        conv_channels: int = 8,
        kernel_size: int = 5,
        num_conv_layers: int = 2,
        distance_bin_width: float = 0.0,
        rounding: str = "floor",
        discrete_envelope: bool = False,
    ) -> None:
        super().__init__(num_filters, cutoff, distance_bin_width, rounding, discrete_envelope)
        if rounding == "noise" and distance_bin_width > 0:
            raise UserError("conv1d takes rounding floor, shifted or dither (it bins any distance)")
        for key, value, least in (
            ("num_bins", num_bins, 2),
            ("conv_channels", conv_channels, 1),
            ("kernel_size", kernel_size, 1),
            ("num_conv_layers", num_conv_layers, 1),
        ):
            if value < least:
                raise UserError(f"{key} must be at least {least}, got {value}")
        if kernel_size % 2 == 0:
            raise UserError(f"kernel_size must be odd, got {kernel_size}")
        self.hparams = dict(
            num_filters=num_filters,
            cutoff=cutoff,
            num_bins=num_bins,
            conv_channels=conv_channels,
            kernel_size=kernel_size,
            num_conv_layers=num_conv_layers,
            **self._rounding_hparams(),
        )
        self.num_bins = num_bins
        layers = []
        for k in range(num_conv_layers):
            layers += [
                nn.Conv1d(
                    1 if k == 0 else conv_channels,
                    conv_channels,
                    kernel_size,
                    padding=kernel_size // 2,
                ),
                ShiftedSoftplus(inplace=True),
            ]
        self.conv = nn.Sequential(*layers)
        self.mlp = _mlp(conv_channels * num_bins, num_filters)
        self.reset_parameters()

    @property
    def feature_width(self) -> float:
        return self.cutoff / self.num_bins

    def bins(self, training: Optional[bool] = None) -> Optional[Tuple[float, float]]:
        # constant on its own bins when no rounding control makes them coarser
        return super().bins(training) or (self.cutoff / self.num_bins, 0.0)

    def bin_index(self, dist: Tensor) -> Tensor:
        """Bin of each distance ``[E]`` (long)."""
        b = torch.floor(dist * (self.num_bins / self.cutoff)).long()
        return b.clamp_(0, self.num_bins - 1)

    def table(self) -> Tensor:
        """Filter of every bin ``[num_bins, num_filters]`` (before the envelope)."""
        w = next(self.mlp.parameters())
        onehot = torch.eye(self.num_bins, device=w.device, dtype=w.dtype).unsqueeze(1)  # [B, 1, B]
        feats = self.conv(onehot).flatten(1)  # [B, conv_channels * B]
        return self.mlp(feats)

    def network(self, dist: Tensor) -> Tensor:
        return self.table()[self.bin_index(dist)]  # [E, num_filters]


#: Registry of edge filters by name (used at the config/CLI boundary only).
#: Constructor arguments every filter takes from the model rather than from its
#: own settings: the model's filter width and its cutoff (one source of truth).
MODEL_ARGS = ("num_filters", "cutoff")

#: The filter registry: name -> class; every other constructor argument is an
#: option (``filter: {name: ..., OPTION: ...}``).
FILTERS = Registry("filter", given=MODEL_ARGS)
for _cls in (
    GaussianFilter,
    DistanceFilter,
    CoordsFilter,
    Conv1dFilter,
    ScaledDistanceFilter,
    DeepDistanceFilter,
    FourierFilter,
    BesselFilter,
    RandomFourierFilter,
    CoordsBasisFilter,
):
    FILTERS.register(_cls.name, _cls)


def make_filter(
    name: str, num_filters: int = 128, cutoff: float = 10.0, **options: Any
) -> EdgeFilter:
    """Build a filter by registry name from the model's filter width and
    cutoff and the filter's own options; an option it does not take is an
    error listing the ones it does."""
    FILTERS.check_options(name, options)
    return FILTERS.cls(name)(num_filters=num_filters, cutoff=cutoff, **options)
