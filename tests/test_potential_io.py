"""Model files: save/load with metadata, and refusal of files that are not (compatible) mlmm models."""

import json
import zipfile

import pytest
import torch

import mlmm
from mlmm.potentials import QEqCharges, io
from conftest import SOLUTE, ZeroPotential, evaluate, solute_positions_tensor


def test_round_trip_keeps_outputs_and_metadata(tmp_path, ff_potential, solute_pdb):
    path = mlmm.save_potential(QEqCharges(ff_potential), tmp_path / "m.pt", supported_elements=[1, 6, 7, 8],
                               cutoff=None, name="ff-qeq")
    module, metadata = mlmm.load_potential(path)
    assert metadata["supported_elements"] == [1, 6, 7, 8]
    assert metadata["predicts_charges"] is True
    assert metadata["units"]["energy"] == "kJ/mol"
    assert metadata["mlmm_version"] == mlmm.__version__
    species = torch.tensor([a.element.atomic_number for a in solute_pdb.topology.atoms()])
    x = solute_positions_tensor(solute_pdb.positions)
    assert torch.equal(module(species, x), ff_potential(species, x))
    _, q_loaded = module.energy_and_charges(species, x, 0.0)
    _, q_eager = QEqCharges(ff_potential).energy_and_charges(species, x, 0.0)
    assert torch.allclose(q_loaded, q_eager, rtol=0, atol=1e-12)


def test_model_file_as_create_mixed_system_potential(tmp_path, ff_potential, solvated, pme_system):
    path = mlmm.save_potential(ff_potential, tmp_path / "m.pt", supported_elements=[1, 6, 7, 8])
    from_file = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, str(path))
    from_module = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ff_potential)
    assert evaluate(from_file, solvated.positions)[0] == evaluate(from_module, solvated.positions)[0]
    only_oxygen = mlmm.save_potential(ff_potential, tmp_path / "o.pt", supported_elements=[8])
    with pytest.raises(ValueError, match="does not support"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, only_oxygen)


def test_not_a_model(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="is not an mlmm model"):
        mlmm.load_potential(text)
    plain = tmp_path / "plain.pt"
    torch.jit.script(ZeroPotential()).save(str(plain))
    with pytest.raises(ValueError, match="without mlmm metadata"):
        mlmm.load_potential(plain)
    with pytest.raises(ValueError, match="does not exist"):
        mlmm.load_potential(tmp_path / "missing.pt")


def _rewrite(path, new_path, edit_metadata=None, edit_tensors=False):
    """Copy a model archive, editing its metadata JSON or its stored tensors."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(new_path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("extra/mlmm.json") and edit_metadata:
                metadata = json.loads(data)
                edit_metadata(metadata)
                data = json.dumps(metadata).encode()
            if edit_tensors and "/data/" in item.filename and len(data) >= 8:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            target.writestr(item, data)
    return new_path


def test_incompatible_version_and_tampering(tmp_path, ff_potential):
    path = mlmm.save_potential(ff_potential, tmp_path / "m.pt", supported_elements=[1, 6, 7, 8])
    newer = _rewrite(path, tmp_path / "newer.pt", lambda m: m.update(format_version=io.FORMAT_VERSION + 1,
                                                                      mlmm_version="99.0"))
    with pytest.raises(ValueError, match=r"saved by mlmm 99.0 with model format 2, which this mlmm .* cannot read"):
        mlmm.load_potential(newer)
    tampered = _rewrite(path, tmp_path / "tampered.pt", edit_tensors=True)
    with pytest.raises(ValueError, match="do not match the saved content hash"):
        mlmm.load_potential(tampered)


def test_exported_force_is_not_taken_for_a_model(tmp_path, ff_potential, solvated, pme_system):
    path = mlmm.export(tmp_path / "force.pt", solvated.topology, pme_system, SOLUTE, ff_potential)
    with pytest.raises(ValueError, match=r"is an exported ML force \(mlmm.export\), not a model"):
        mlmm.load_potential(path)


def test_zero_dimensional_buffers_are_hashed(tmp_path):
    class Scaled(ZeroPotential):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.tensor(2.0))

    path = mlmm.save_potential(Scaled(), tmp_path / "s.pt", supported_elements=[1])
    assert mlmm.load_potential(path)[1]["content_hash"] == io.content_hash(Scaled())


def test_rescript_saves_the_same_model_with_the_current_code(tmp_path, ff_potential, capsys):
    from conftest import WATER_MODELS
    from mlmm.cli import main

    source = WATER_MODELS["electrostatic"]
    output = tmp_path / "rescripted.pt"
    assert main(["rescript", str(source), str(output)]) == 0
    old, old_metadata = mlmm.load_potential(source)
    new, new_metadata = mlmm.load_potential(output)  # verifies the content hash of the file
    assert new_metadata["content_hash"] == old_metadata["content_hash"]
    for key in ("name", "supported_elements", "cutoff_nm", "extra", "embedding_scheme", "environment"):
        assert new_metadata[key] == old_metadata[key]
    species = torch.tensor([8, 1, 1])
    generator = torch.Generator().manual_seed(3)
    x = (0.1 * torch.randn(3, 3, generator=generator, dtype=torch.float64)).requires_grad_(True)
    mm = 0.5 + 0.1 * torch.randn(12, 3, generator=generator, dtype=torch.float64)
    charges = 0.5 * torch.randn(12, generator=generator, dtype=torch.float64)
    outputs = []
    for model in (old, new):
        energy, _ = model.energy_in_field(species, x, mm, charges, 0.0)
        outputs.append((energy, torch.autograd.grad(energy, x)[0]))
    assert outputs[0][0] == outputs[1][0] and torch.equal(outputs[0][1], outputs[1][1])
    no_recipe = mlmm.save_potential(ff_potential, tmp_path / "ff.pt", supported_elements=[1, 6, 7, 8])
    assert main(["rescript", str(no_recipe), str(tmp_path / "out.pt")]) == 1
    assert "does not record how its network was built" in capsys.readouterr().err
    # --vacuum: the same embedding network with another vacuum network (here the one it was trained with)
    paired = tmp_path / "paired.pt"
    assert main(["rescript", str(source), str(paired), "--vacuum", str(WATER_MODELS["mechanical"])]) == 0
    assert "its vacuum network from" in capsys.readouterr().out
    paired_metadata = mlmm.read_metadata(paired)
    assert paired_metadata["content_hash"] == old_metadata["content_hash"]
    for key in ("embedding_scheme", "environment", "supported_elements", "cutoff_nm"):
        assert paired_metadata[key] == old_metadata[key]
    assert main(["rescript", str(WATER_MODELS["mechanical"]), str(tmp_path / "out.pt"), "--vacuum",
                 str(WATER_MODELS["mechanical"])]) == 1
    assert "not trained with a vacuum model" in capsys.readouterr().err
