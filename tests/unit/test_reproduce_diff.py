"""What `mlops reproduce` says when two ONNX artifacts differ, and the training fix that makes them identical:
skl2onnx's opset imports (a set, ordered by Python's per-process string hash) are sorted before serializing."""

from __future__ import annotations

import onnx
import pytest
from mlops.data import synthetic
from mlops.data.datasets import parse_dataset
from mlops.training import fit
from onnx import helper

from mlops_local.reproduce import onnx_differences


@pytest.fixture(scope="module")
def artifact() -> bytes:
    family = synthetic.credit_risk_family(name="diff-test")
    data = parse_dataset(synthetic.credit_risk_csv(600, 2), family, "diff.csv")
    return fit.train(family, data.X, data.y, classes=data.classes).onnx_bytes


def _edited(artifact: bytes, edit) -> bytes:  # type: ignore[no-untyped-def]
    model = onnx.load_from_string(artifact)
    edit(model)
    return model.SerializeToString()


def test_identical_artifacts_have_no_differences(artifact):
    assert onnx_differences(artifact, artifact) == []


def test_opset_imports_are_serialized_in_domain_order(artifact):
    domains = [o.domain for o in onnx.load_from_string(artifact).opset_import]
    assert len(domains) == 2 and domains == sorted(domains)


def test_opset_order_alone_is_named_as_a_serialization_difference_and_the_fix_removes_it(artifact):
    def reverse(model) -> None:  # type: ignore[no-untyped-def]
        imports = [(o.domain, o.version) for o in model.opset_import][::-1]
        del model.opset_import[:]
        for domain, version in imports:
            model.opset_import.add(domain=domain, version=version)

    shuffled = _edited(artifact, reverse)
    assert shuffled != artifact
    differences = onnx_differences(artifact, shuffled)
    assert len(differences) == 1 and differences[0].startswith("opset imports in another order")
    assert _edited(shuffled, fit.canonical_opset_order) == artifact


def test_changed_coefficients_and_metadata_are_named_with_the_size_of_the_change(artifact):
    def perturb(model) -> None:  # type: ignore[no-untyped-def]
        node = next(n for n in model.graph.node if n.op_type == "LinearClassifier")
        attribute = next(a for a in node.attribute if a.name == "coefficients")
        values = list(attribute.floats)
        values[3] += 0.25
        node.attribute.remove(attribute)
        node.attribute.append(helper.make_attribute("coefficients", values))
        threshold = next(p for p in model.metadata_props if p.key == "mlops.threshold")
        threshold.value = "0.4"

    differences = onnx_differences(artifact, _edited(artifact, perturb))
    assert any(d.startswith("metadata mlops.threshold: '0.5' recorded, '0.4' now") for d in differences)
    coefficients = [d for d in differences if "attribute coefficients" in d]
    assert len(coefficients) == 1 and "1 of" in coefficients[0] and "largest by 0.25" in coefficients[0]
