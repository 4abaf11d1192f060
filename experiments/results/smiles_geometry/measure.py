"""What a SMILES input costs: the shipped qm9-U0 model on test molecules of its
card, once at QM9's DFT geometry and once at the geometry ``predict --smiles``
builds (rdkit ETKDG + MMFF, :func:`pyg_schnet.data.molio.from_smiles`).

    cd experiments/results/smiles_geometry && python measure.py [N] > result.txt
"""

import sys

import torch

from pyg_schnet.data.molio import check_molecule, from_smiles
from pyg_schnet.errors import UserError
from pyg_schnet.hub import model_card, pretrained, pretrained_data

n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
name = "qm9-U0"
model, card = pretrained(name), model_card(name)
ds, split = pretrained_data(name, None)
target = ds.targets()[:, 7]  # U0, eV
rows, failed = [], 0
with torch.no_grad():
    for i in split.test_idx[:n].tolist():
        d = ds[i]
        qm9 = float(model(d.z, d.pos).view(-1))
        try:
            mol = check_molecule(from_smiles(d.smiles))
        except UserError:
            failed += 1
            continue
        if sorted(mol.z.tolist()) != sorted(d.z.tolist()):
            failed += 1  # rdkit's hydrogens differ from QM9's (charged or tautomeric SMILES)
            continue
        smi = float(model(mol.z, mol.pos).view(-1))
        rows.append((float(target[i]), qm9, smi))

t = torch.tensor(rows, dtype=torch.float64)
err_qm9 = (t[:, 1] - t[:, 0]).abs()
err_smi = (t[:, 2] - t[:, 0]).abs()
shift = t[:, 2] - t[:, 1]
print(f"{name} on the first {n} test molecules of its card; {len(rows)} compared, {failed} skipped")
print("(SMILES not embedded, or rdkit's atoms differ from QM9's)")
print(f"MAE at QM9's DFT geometry:        {1000 * err_qm9.mean():7.1f} meV")
print(f"MAE at the SMILES (MMFF) geometry: {1000 * err_smi.mean():7.1f} meV")
print(
    f"prediction shift SMILES - DFT: mean {1000 * shift.mean():+.1f} meV, median "
    f"{1000 * shift.median():+.1f} meV, mean |shift| {1000 * shift.abs().mean():.1f} meV, "
    f"90th percentile |shift| {1000 * shift.abs().quantile(0.9):.1f} meV"
)
