"""An ASE calculator for the energy models: :class:`SchNetCalculator`.

    >>> from ase.build import molecule
    >>> from pyg_schnet.calculators import SchNetCalculator
    >>> atoms = molecule("CH3CH2OH")
    >>> atoms.calc = SchNetCalculator("qm9-U0")
    >>> atoms.get_potential_energy()  # eV, the model's U0

ASE is an optional dependency (``pip install 'pyg_schnet[ase]'``); this
module imports it, ``import pyg_schnet`` does not.
"""

from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Set, Union

import torch

from pyg_schnet.analysis.evaluate import applicability
from pyg_schnet.data.molio import Molecule, check_molecule
from pyg_schnet.errors import UserError
from pyg_schnet.hub import pretrained
from pyg_schnet.nn.fast import eager_kernels
from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.run.inference import resolve_device

try:
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes
except ImportError:
    raise UserError(
        "pyg_schnet.calculators needs ASE, which is not installed: "
        "pip install 'pyg_schnet[ase]' (or pip install ase)"
    ) from None

#: The targets whose prediction is a molecule's energy in eV, what ASE calls
#: ``energy``: QM9's internal energy at 0 K (the electronic energy plus the
#: zero-point energy) and the same less the free atoms' energies.
ENERGY_TARGETS = ("U0", "U0_atom")


class SchNetCalculator(Calculator):
    r"""An ASE calculator of a QM9 energy model: ``energy`` in eV (ASE's unit)
    of a molecule with positions in Å.

    Only the energy is implemented: :meth:`ase.Atoms.get_forces` raises ASE's
    :class:`~ase.calculators.calculator.PropertyNotImplementedError`. The
    models are trained on energies at DFT equilibrium geometries, never on
    forces, and their gradients are not forces: on ethanol at its QM9
    geometry (a DFT minimum, where the true forces are about 0), the
    gradient of ``qm9-U0`` is 0.1 to 4.9 eV/Å per atom. An optimiser or a
    molecular dynamics run on them would walk away from the minimum it
    started at, so they are not offered under the name ``forces``
    (``torch.autograd.grad`` on :attr:`model` gives them to whoever wants
    them regardless).

    Each molecule goes through the checks of ``pyg-schnet predict``: an
    element other than H, C, N, O and F, atoms on top of each other or
    coordinates that are not finite are a :class:`~pyg_schnet.errors.UserError`;
    a molecule outside QM9's range (more atoms, bohr coordinates, several
    fragments, an odd electron count) gets a :class:`UserWarning`, once per
    chemical formula. Periodic cells are refused: the models see isolated
    molecules.

    Args:
        model (str or AtomisticModel): A model name or folder, as
            :func:`pyg_schnet.pretrained` takes (``"qm9-U0"``, ``"./my-U0"``),
            or a model loaded from a checkpoint (:func:`pyg_schnet.pretrained`,
            :func:`pyg_schnet.analysis.evaluate.load_run`), whose
            :attr:`~pyg_schnet.nn.atomistic.AtomisticModel.target` must be
            one of :data:`ENERGY_TARGETS`. (default: :obj:`"qm9-U0"`)
        device (str): ``cpu`` or ``cuda[:N]``. (default: :obj:`"cpu"`)
    """

    implemented_properties: List[str] = ["energy"]

    def __init__(self, model: Union[str, AtomisticModel] = "qm9-U0", device: str = "cpu") -> None:
        super().__init__()
        net = pretrained(model) if isinstance(model, str) else model
        if not isinstance(net, AtomisticModel):
            raise UserError(
                f"SchNetCalculator takes a model name or a pyg_schnet model, "
                f"not {type(net).__name__}"
            )
        if net.target not in ENERGY_TARGETS:
            what = f"model {model!r}" if isinstance(model, str) else "the model"
            trained = (
                f"was trained on {net.target}"
                if net.target is not None
                else "records no target (it was not loaded from a checkpoint)"
            )
            raise UserError(
                f"{what} {trained}; an ASE calculator's energy needs a model of "
                f"{' or '.join(ENERGY_TARGETS)} (eV)"
            )
        self.device = resolve_device(device)
        #: The model, in eval mode on :attr:`device`.
        self.model = net.to(self.device).eval()
        self._warned: Set[str] = set()

    def calculate(
        self,
        atoms: Optional[Atoms] = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Predict the energy of ``atoms`` into :attr:`results` (ASE calls
        this through :meth:`ase.Atoms.get_potential_energy`)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        name = atoms.get_chemical_formula()
        if atoms.pbc.any():
            raise UserError(
                f"{name}: periodic boundary conditions are not supported (QM9 models "
                f"predict isolated molecules); set atoms.pbc = False"
            )
        mol = check_molecule(
            Molecule(
                name,
                torch.as_tensor(atoms.numbers, dtype=torch.long),
                torch.tensor(atoms.positions, dtype=torch.float32).view(-1, 3),
                "ase",
            )
        )
        note = applicability(mol.z, mol.pos)
        if note and name not in self._warned:
            self._warned.add(name)
            warnings.warn(f"{name}: outside QM9: {note}", UserWarning, stacklevel=2)
        with torch.no_grad(), eager_kernels():  # one molecule: no compile step, the same numbers
            energy = self.model(mol.z.to(self.device), mol.pos.to(self.device), num_graphs=1)
        self.results["energy"] = float(energy.view(-1)[0])
