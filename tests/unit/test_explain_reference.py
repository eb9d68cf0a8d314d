"""Explanations from the served ONNX artifact (mlops.serving.explain) against references: the `shap` library on the
scikit-learn model (TreeExplainer with tree_path_dependent, LinearExplainer with the training rows as background)
and brute-force Shapley values of the path-dependent value function (Lundberg et al. 2018, Algorithm 1) on
hand-built ONNX trees for the split modes and NaN routing scikit-learn never writes.

Every explanation a test produces is checked for additivity against onnxruntime's raw output of the same graph
(`assert_additive`): base value + sum of contributions equals the served model's raw score within 1e-6 where the
graph outputs float64, and within 1e-6 + 2^-20 x max(1, |raw|) (16 float32 ulps) where it outputs float32 (every
ONNX-ML classifier does, and float32 graphs also add in float32)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mlops.core.errors import ConfigurationError, ValidationError
from mlops.core.schemas import Feature, ModelFamily
from mlops.serving import explain
from mlops.training.fit import build_estimator, to_onnx_bytes
from onnx import TensorProto, helper, numpy_helper
from threadpoolctl import threadpool_limits

shap = pytest.importorskip("shap")

ROWS = 2500
TOLERANCE = 1e-6
REGIONS = ("north", "south", "east", "west", "central")
PURPOSES = ("car", "home", "education")


def credit_features(algorithm: str) -> tuple[Feature, ...]:
    """Categoricals in the middle of the schema (the ColumnTransformer puts them last), missing values imputed
    three ways (HistGradientBoosting: natively), an "other" level, reason texts on some features."""
    native = algorithm == "hist_gradient_boosting"
    return (
        Feature(name="age", minimum=18, maximum=100),
        Feature(name="region", kind="categorical", categories=REGIONS, unknown="other",
                missing="native" if native else "most_frequent", description="Region with higher default rates"),
        Feature(name="income", minimum=0, maximum=1e7, missing="native" if native else "median",
                description="Low income"),
        Feature(name="debt ratio", minimum=0, maximum=5, description="High debt relative to income"),
        Feature(name="late_payments", minimum=0, maximum=100, description="Too many recent late payments"),
        Feature(name="purpose", kind="categorical", categories=PURPOSES, missing="constant", fill_value="home"),
        Feature(name="employment.years", minimum=0, maximum=60, missing="mean"),
    )


def credit_family(algorithm: str, **hyperparameters: object) -> ModelFamily:
    return ModelFamily(name="explain-test", algorithm=algorithm, target="default",
                       features=credit_features(algorithm), hyperparameters=hyperparameters,
                       sensitive_attribute=None)


def credit_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X in schema order (category index, 5 = "other", NaN = missing) and a label from a known logistic model."""
    rng = np.random.default_rng(seed)
    age = rng.normal(42, 11, rows).clip(18, 90).round()
    region = rng.choice(6, rows, p=[0.25, 0.2, 0.2, 0.15, 0.15, 0.05]).astype(float)
    income = np.exp(rng.normal(10.8, 0.45, rows)).round(-2)
    debt = rng.beta(2, 5, rows).round(4)
    late = rng.poisson(0.6 + 1.5 * debt, rows).astype(float)
    purpose = rng.choice(3, rows, p=[0.5, 0.3, 0.2]).astype(float)
    employment = rng.gamma(2.0, 3.0, rows).round(1)
    logit = (-1.5 + 0.8 * late + 2.2 * (debt - 0.3) - 1.0 * (np.log(income) - 10.8) - 0.02 * (age - 42)
             + np.array([-0.2, 0.3, 0.0, -0.1, 0.1, 0.4])[region.astype(int)] + 0.3 * (purpose == 2)
             - 0.03 * employment)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    income[rng.random(rows) < 0.1] = np.nan
    region[rng.random(rows) < 0.05] = np.nan
    purpose[rng.random(rows) < 0.05] = np.nan
    employment[rng.random(rows) < 0.05] = np.nan
    return np.column_stack([age, region, income, debt, late, purpose, employment]), y


class Served:
    """A family's model as the platform serves it: the fitted scikit-learn estimator and its ONNX artifact."""

    def __init__(self, algorithm: str, double: bool | None = None, **hyperparameters: object) -> None:
        self.family = credit_family(algorithm, **hyperparameters)
        self.X, self.y = credit_data(ROWS, 11)
        self.estimator, params = build_estimator(self.family, 42)
        with threadpool_limits(1):  # HistGradientBoosting's OpenMP threads crawl on a shared 2-core machine
            self.estimator.fit(self.X, self.y)
        self.onnx_bytes = to_onnx_bytes(self.estimator, self.family, params, double=double)
        self.classifier = self.estimator.steps[-1][1] if hasattr(self.estimator, "steps") else self.estimator
        self.rows = credit_data(300, 12)[0]  # rows to explain, with missing values and "other"

    def transformed(self, X: np.ndarray) -> np.ndarray:
        """What the classifier reads (imputed, encoded), per scikit-learn."""
        return self.estimator[:-1].transform(X) if hasattr(self.estimator, "steps") else X


@pytest.fixture(scope="module")
def forest() -> Served:
    return Served("random_forest", n_estimators=25, max_depth=7, min_samples_leaf=3)


@pytest.fixture(scope="module", params=[True, False], ids=["float64 thresholds", "float32 thresholds"])
def boosting(request: pytest.FixtureRequest) -> Served:
    return Served("hist_gradient_boosting", double=request.param, max_iter=40)


@pytest.fixture(scope="module", params=[False, True], ids=["float32 graph", "float64 graph"])
def logistic(request: pytest.FixtureRequest) -> Served:
    return Served("logistic_regression", double=request.param)


# ---- onnxruntime's raw output, the additivity check ---------------------------------------------------------------

def raw_output_graph(onnx_bytes: bytes) -> tuple[bytes, str]:
    """The same graph with the model's raw score as its only output: post_transform NONE on ONNX-ML classifiers
    (their second output is then the per-class score), the MatMul + Add scores of a linear model written in
    standard operators. Returns (bytes, output name)."""
    model = onnx.load_from_string(onnx_bytes)
    name, kind = None, TensorProto.FLOAT
    for node in model.graph.node:
        if node.op_type in ("TreeEnsembleClassifier", "LinearClassifier"):
            for attr in node.attribute:
                if attr.name == "post_transform":
                    attr.s = b"NONE"
            name = node.output[1]
        elif node.op_type == "TreeEnsembleRegressor":
            name = node.output[0]
        elif node.op_type == "Add" and any(p.op_type == "MatMul" and p.output[0] == node.input[0]
                                           for p in model.graph.node):
            name, kind = node.output[0], TensorProto.DOUBLE
    assert name is not None
    kept = [o for o in model.graph.output if o.name == name]
    del model.graph.output[:]
    model.graph.output.extend(kept or [helper.make_tensor_value_info(name, kind, None)])
    return model.SerializeToString(), name


def onnxruntime_raw(onnx_bytes: bytes, X: np.ndarray) -> tuple[np.ndarray, bool]:
    """The positive-class raw score per row from onnxruntime, and whether it came out as float64."""
    graph, _ = raw_output_graph(onnx_bytes)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    dtype = np.float64 if session.get_inputs()[0].type == "tensor(double)" else np.float32
    (scores,) = session.run(None, {session.get_inputs()[0].name: X.astype(dtype)})
    scores = np.asarray(scores)
    return scores[:, -1].astype(np.float64), scores.dtype == np.float64


def assert_additive(explainer: explain.Explainer, onnx_bytes: bytes, X: np.ndarray,
                    contributions: np.ndarray) -> None:
    """base value + sum of contributions == onnxruntime's raw output, row by row (tolerance: module docstring)."""
    raw, exact = onnxruntime_raw(onnx_bytes, X)
    ours = explainer.base_value + contributions.sum(axis=1)
    tolerance = TOLERANCE if exact else TOLERANCE + 2.0**-20 * np.maximum(1.0, np.abs(raw))
    gap = np.abs(ours - raw)
    assert np.all(gap <= tolerance), f"additivity off by {gap.max():.3g} (row {int(np.argmax(gap - tolerance))})"


def explained(explainer: explain.Explainer, onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    contributions = explainer.contributions(X)
    assert contributions.shape == X.shape
    assert_additive(explainer, onnx_bytes, X, contributions)
    return contributions


def sklearn_covers(classifier: object) -> list[np.ndarray]:
    """scikit-learn's own node weights, node ids as in the ONNX trees (skl2onnx keeps scikit-learn's order)."""
    if hasattr(classifier, "estimators_"):
        return [tree.tree_.weighted_n_node_samples for tree in classifier.estimators_]
    return [predictor.nodes["count"].astype(np.float64) for (predictor,) in classifier._predictors]


def shap_tree_values(served: Served, X: np.ndarray) -> tuple[np.ndarray, float]:
    reference = shap.TreeExplainer(served.classifier, feature_perturbation="tree_path_dependent")
    values = np.asarray(reference.shap_values(served.transformed(X)))
    if values.ndim == 3:  # per class: the positive class's probability
        values = values[..., 1]
    return values, float(np.ravel(reference.expected_value)[-1])


# ---- the ONNX protobuf subset ----------------------------------------------------------------------------------------

def test_protobuf_subset_reads_the_artifact_as_the_onnx_package_does(forest: Served, logistic: Served) -> None:
    for onnx_bytes in (forest.onnx_bytes, logistic.onnx_bytes):
        ours = explain.read_model(onnx_bytes)
        theirs = onnx.load_from_string(onnx_bytes)
        assert [n.op_type for n in ours.graph.node] == [n.op_type for n in theirs.graph.node]
        assert [list(n.input) for n in ours.graph.node] == [list(n.input) for n in theirs.graph.node]
        assert {e.key: e.value for e in ours.metadata_props} == {e.key: e.value for e in theirs.metadata_props}
        assert {o.domain: o.version for o in ours.opset_import} == {o.domain: o.version for o in theirs.opset_import}
        for mine, node in zip(ours.graph.node, theirs.graph.node, strict=True):
            attrs = explain._attributes(mine)
            for attr in node.attribute:
                expected = helper.get_attribute_value(attr)
                if isinstance(expected, onnx.TensorProto):
                    np.testing.assert_array_equal(attrs[attr.name], numpy_helper.to_array(expected))
                elif isinstance(expected, list) and expected and isinstance(expected[0], float):
                    np.testing.assert_array_equal(attrs[attr.name], np.asarray(expected, dtype=np.float32))
                elif isinstance(expected, list):
                    assert list(attrs[attr.name]) == expected
                else:
                    assert attrs[attr.name] == expected
        for mine, init in zip(ours.graph.initializer, theirs.graph.initializer, strict=True):
            np.testing.assert_array_equal(explain._tensor_array(mine), numpy_helper.to_array(init))


def test_read_model_rejects_bytes_that_are_not_an_onnx_model() -> None:
    with pytest.raises(ConfigurationError, match="not a readable ONNX model|holds no ONNX graph"):
        explain.read_model(b"\x08\x07garbage that is not protobuf \xff\xff")


# ---- tree ensembles against shap's TreeExplainer --------------------------------------------------------------------

def test_random_forest_contributions_equal_shap_tree_explainer(forest: Served) -> None:
    explainer = explain.Explainer.from_onnx(forest.onnx_bytes, covers=sklearn_covers(forest.classifier))
    ours = explained(explainer, forest.onnx_bytes, forest.rows)
    reference, base = shap_tree_values(forest, forest.rows)
    assert explainer.output == "probability"
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)
    assert explainer.base_value == pytest.approx(base, abs=TOLERANCE)
    importance = explainer.global_importance(forest.rows)
    np.testing.assert_allclose(list(importance.values()), np.abs(reference).mean(axis=0), atol=TOLERANCE)


def test_gradient_boosting_contributions_equal_shap_tree_explainer_with_missing_values(boosting: Served) -> None:
    assert np.isnan(boosting.rows).any(axis=0)[[1, 2]].all()  # NaN routed by the trees themselves
    explainer = explain.Explainer.from_onnx(boosting.onnx_bytes, covers=sklearn_covers(boosting.classifier))
    ours = explained(explainer, boosting.onnx_bytes, boosting.rows)
    reference, base = shap_tree_values(boosting, boosting.rows)
    assert explainer.output == "log_odds"
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)
    assert explainer.base_value == pytest.approx(base, abs=TOLERANCE)


@pytest.mark.parametrize("algorithm, hyperparameters", [
    ("random_forest", {"n_estimators": 15, "max_depth": 6, "bootstrap": False}),
    ("hist_gradient_boosting", {"max_iter": 25}),
])
def test_tree_covers_equal_scikit_learn_node_counts_and_stored_covers_reproduce_shap(
        algorithm: str, hyperparameters: dict[str, object]) -> None:
    # Where scikit-learn's node weights are plain training-row counts (no bootstrap, no early-stopping split),
    # routing the training rows through the ONNX trees must give the same numbers.
    served = Served(algorithm, **hyperparameters)
    covers = explain.tree_covers(served.onnx_bytes, served.X)
    for ours, theirs in zip(covers, sklearn_covers(served.classifier), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    artifact = explain.with_background(served.onnx_bytes, served.X)
    explainer = explain.Explainer.from_onnx(artifact)
    ours = explained(explainer, artifact, served.rows)
    reference, _ = shap_tree_values(served, served.rows)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)


def test_forest_covers_count_every_training_row_not_the_bootstrap_sample(forest: Served) -> None:
    covers = explain.tree_covers(forest.onnx_bytes, forest.X)
    assert all(c[0] == ROWS for c in covers)
    assert any(not np.array_equal(c, s) for c, s in zip(covers, sklearn_covers(forest.classifier), strict=True))
    artifact = explain.with_background(forest.onnx_bytes, forest.X)
    explained(explain.Explainer.from_onnx(artifact), artifact, forest.rows)


# ---- linear models against shap's LinearExplainer -------------------------------------------------------------------

def linear_reference(served: Served, X: np.ndarray) -> tuple[np.ndarray, float]:
    """shap's LinearExplainer on the transformed features (all training rows as background), summed back to the
    schema's features through the ColumnTransformer's column map."""
    background = served.transformed(served.X)
    reference = shap.LinearExplainer(served.classifier, shap.maskers.Independent(background,
                                                                                 max_samples=len(background)))
    values = np.asarray(reference.shap_values(served.transformed(X)))
    prepare = served.estimator.named_steps["prepare"]
    out = np.zeros((len(X), len(served.family.features)))
    column = 0
    for _, transformer, features in prepare.transformers_:
        if transformer == "drop":
            continue
        widths = [len(c) for c in transformer.categories_] if hasattr(transformer, "categories_") else \
            [1] * len(features)
        for feature, width in zip(features, widths, strict=True):
            out[:, feature] += values[:, column:column + width].sum(axis=1)
            column += width
    assert column == values.shape[1]
    return out, float(np.ravel(reference.expected_value)[0])


def test_logistic_regression_contributions_equal_shap_linear_explainer(logistic: Served) -> None:
    baseline = explain.linear_baseline(logistic.onnx_bytes, logistic.X)
    np.testing.assert_allclose(baseline, logistic.transformed(logistic.X).mean(axis=0), rtol=1e-6, atol=1e-6)
    explainer = explain.Explainer.from_onnx(logistic.onnx_bytes, baseline=baseline)
    ours = explained(explainer, logistic.onnx_bytes, logistic.rows)
    reference, base = linear_reference(logistic, logistic.rows)
    assert explainer.output == "log_odds"
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)
    assert explainer.base_value == pytest.approx(base, abs=TOLERANCE)


def test_imputed_value_is_attributed_to_the_feature_that_was_missing(logistic: Served) -> None:
    explainer = explain.Explainer.from_onnx(explain.with_background(logistic.onnx_bytes, logistic.X))
    row = logistic.rows[:1].copy()
    row[0, 2] = np.nan  # income missing: imputed with the training median inside the graph
    filled = row.copy()
    filled[0, 2] = np.nanmedian(logistic.X[:, 2])
    missing, imputed = explainer.contributions(row), explainer.contributions(filled)
    assert_additive(explainer, logistic.onnx_bytes, row, missing)
    np.testing.assert_allclose(missing, imputed, atol=1e-9)
    assert missing[0, 2] != 0.0


def test_one_hot_columns_sum_to_their_categorical_in_schema_order(logistic: Served) -> None:
    explainer = explain.Explainer.from_onnx(explain.with_background(logistic.onnx_bytes, logistic.X))
    rows = np.repeat(logistic.rows[:1], 7, axis=0)
    rows[:, 1] = [0, 1, 2, 3, 4, 5, np.nan]  # every region, "other", missing (imputed: most frequent)
    contributions = explained(explainer, logistic.onnx_bytes, rows)
    others = np.delete(contributions, 1, axis=1)
    np.testing.assert_allclose(others, np.repeat(others[:1], 7, axis=0), atol=1e-12)  # only region moves
    assert len(set(np.round(contributions[:6, 1], 12))) == 6
    most_frequent = float(np.argmax(np.bincount(logistic.X[~np.isnan(logistic.X[:, 1]), 1].astype(int))))
    assert contributions[6, 1] == pytest.approx(contributions[int(most_frequent), 1], abs=1e-12)


# ---- hand-built ONNX trees: every split mode, NaN routing, repeated features, zero covers ----------------------------

GRID = np.arange(-4, 5) / 4  # values exactly representable in float32, so equality splits can hit


def random_trees(rng: np.random.Generator, modes: tuple[str, ...], n_features: int, n_trees: int = 4,
                 depth: int = 5) -> tuple[dict[str, list], list[np.ndarray]]:
    """Random trees as ONNX-ML node lists (node ids in preorder), and covers: random leaf counts, about one leaf in
    ten never reached by the training rows (cover 0), inner nodes the sum of their children."""
    nodes: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "featureids", "modes", "values", "truenodeids",
                                              "falsenodeids", "tracks", "leaf_tree", "leaf_node", "leaf_value")}
    covers = []
    for tree in range(n_trees):
        counts: list[float] = []

        def grow(level: int, tree: int = tree, counts: list[float] = counts) -> int:
            node, index = len(counts), len(nodes["modes"])
            counts.append(0.0)
            nodes["treeids"].append(tree)
            nodes["nodeids"].append(node)
            leaf = level == depth or (level > 1 and rng.random() < 0.25)
            nodes["modes"].append("LEAF" if leaf else str(rng.choice(modes)))
            nodes["featureids"].append(0 if leaf else int(rng.integers(0, n_features)))
            nodes["values"].append(0.0 if leaf else float(rng.choice(GRID)))
            nodes["tracks"].append(0 if leaf else int(rng.random() < 0.5))
            nodes["truenodeids"].append(0)
            nodes["falsenodeids"].append(0)
            if leaf:
                nodes["leaf_tree"].append(tree)
                nodes["leaf_node"].append(node)
                nodes["leaf_value"].append(float(np.float32(rng.normal())))
                counts[node] = float(rng.integers(1, 30)) if rng.random() < 0.9 else 0.0
                return node
            left, right = grow(level + 1), grow(level + 1)
            nodes["truenodeids"][index], nodes["falsenodeids"][index] = left, right
            counts[node] = counts[left] + counts[right] or 1.0
            if counts[left] + counts[right] == 0:  # rows must reach an inner node: give them to its true side
                counts[left] = 1.0
            return node

        grow(0)
        covers.append(np.asarray(counts))
    return nodes, covers


def recount(nodes: dict[str, list], covers: list[np.ndarray]) -> None:
    """Each inner node's cover = the sum of its children's (the fix-up above can leave a chain inconsistent)."""
    for tree, cover in enumerate(covers):
        index = {nodes["nodeids"][i]: i for i, t in enumerate(nodes["treeids"]) if t == tree}

        def total(node: int, cover: np.ndarray = cover, index: dict[int, int] = index) -> float:
            i = index[node]
            if nodes["modes"][i] != "LEAF":
                cover[node] = total(nodes["truenodeids"][i]) + total(nodes["falsenodeids"][i])
            return float(cover[node])

        total(0)


def tree_regressor(nodes: dict[str, list], n_features: int, double: bool) -> bytes:
    """A TreeEnsembleRegressor graph (ai.onnx.ml 3 with *_as_tensor attributes when double)."""
    values = {"nodes_values": np.asarray(nodes["values"]), "target_weights": np.asarray(nodes["leaf_value"]),
              "base_values": np.asarray([0.25])}
    attrs: dict[str, object] = {
        "nodes_treeids": nodes["treeids"], "nodes_nodeids": nodes["nodeids"], "nodes_featureids": nodes["featureids"],
        "nodes_modes": nodes["modes"], "nodes_truenodeids": nodes["truenodeids"],
        "nodes_falsenodeids": nodes["falsenodeids"], "nodes_missing_value_tracks_true": nodes["tracks"],
        "target_treeids": nodes["leaf_tree"], "target_nodeids": nodes["leaf_node"],
        "target_ids": [0] * len(nodes["leaf_node"]), "n_targets": 1, "aggregate_function": "SUM"}
    for name, array in values.items():
        if double:
            attrs[f"{name}_as_tensor"] = numpy_helper.from_array(array.astype(np.float64), f"{name}_as_tensor")
        else:
            attrs[name] = array.astype(np.float32).tolist()
    kind = TensorProto.DOUBLE if double else TensorProto.FLOAT
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "trees", [helper.make_tensor_value_info("X", kind, [None, n_features])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3 if double else 1)])
    model.ir_version = 9
    return model.SerializeToString()


def brute_force_shapley(nodes: dict[str, list], covers: list[np.ndarray], x: np.ndarray,
                        n_features: int) -> tuple[np.ndarray, float]:
    """Shapley values of v(S) = E[f(x) | x_S] under the path-dependent approximation (Lundberg et al. 2018,
    Algorithm 1 EXPVALUE), by enumerating every subset S. onnxruntime's branch semantics."""
    compare = {"BRANCH_LEQ": np.less_equal, "BRANCH_LT": np.less, "BRANCH_GTE": np.greater_equal,
               "BRANCH_GT": np.greater, "BRANCH_EQ": np.equal, "BRANCH_NEQ": np.not_equal}
    trees = sorted(set(nodes["treeids"]))
    index = {(nodes["treeids"][i], nodes["nodeids"][i]): i for i in range(len(nodes["modes"]))}
    leaf_value = {(t, n): v for t, n, v in zip(nodes["leaf_tree"], nodes["leaf_node"], nodes["leaf_value"],
                                              strict=True)}

    def expected(tree: int, node: int, subset: frozenset[int]) -> float:
        i = index[(tree, node)]
        if nodes["modes"][i] == "LEAF":
            return leaf_value[(tree, node)]
        true_child, false_child = nodes["truenodeids"][i], nodes["falsenodeids"][i]
        feature = nodes["featureids"][i]
        if feature in subset:
            value = x[feature]
            goes = bool(compare[nodes["modes"][i]](value, nodes["values"][i])) or (
                bool(nodes["tracks"][i]) and math.isnan(value))
            return expected(tree, true_child if goes else false_child, subset)
        cover = covers[tree]
        return (cover[true_child] * expected(tree, true_child, subset)
                + cover[false_child] * expected(tree, false_child, subset)) / cover[node]

    def value(subset: frozenset[int]) -> float:
        return 0.25 + sum(expected(t, 0, subset) for t in trees)

    phi = np.zeros(n_features)
    for i in range(n_features):
        others = [j for j in range(n_features) if j != i]
        for size in range(n_features):
            weight = math.factorial(size) * math.factorial(n_features - size - 1) / math.factorial(n_features)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                phi[i] += weight * (value(s | {i}) - value(s))
    return phi, value(frozenset())


@pytest.mark.parametrize("modes", [
    ("BRANCH_LEQ",), ("BRANCH_LT",), ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"),
    ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"),
], ids=["leq", "lt", "inequalities", "all modes"])
@pytest.mark.parametrize("double", [False, True], ids=["float", "double"])
def test_tree_shap_equals_brute_force_shapley_for_every_split_mode_and_nan_routing(
        modes: tuple[str, ...], double: bool) -> None:
    rng = np.random.default_rng(len(modes) * 10 + double)
    n_features = 4
    nodes, covers = random_trees(rng, modes, n_features)
    recount(nodes, covers)
    onnx_bytes = tree_regressor(nodes, n_features, double)
    X = rng.choice(GRID, size=(40, n_features))
    X[rng.random(X.shape) < 0.15] = np.nan
    explainer = explain.Explainer.from_onnx(onnx_bytes, covers=covers)
    ours = explained(explainer, onnx_bytes, X)
    assert explainer.output == "value"
    for x, phi in zip(X, ours, strict=True):
        reference, base = brute_force_shapley(nodes, covers, x, n_features)
        np.testing.assert_allclose(phi, reference, rtol=0, atol=1e-12)
        assert explainer.base_value == pytest.approx(base, abs=1e-12)


# ---- ONNX-ML preprocessing operators skl2onnx writes for other pipelines --------------------------------------------

def test_imputer_scaler_normalizer_one_hot_graph_is_explained_per_original_feature() -> None:
    # X = [a, b, category]: Imputer (NaN -> fills) -> [a, b] Scaler -> Normalizer L2, category -> one-hot;
    # LinearClassifier over [normalised a, normalised b, one-hot x3].
    nodes = [
        helper.make_node("Imputer", ["X"], ["imputed"], domain="ai.onnx.ml", imputed_value_floats=[1.5, -2.0, 0.0],
                         replaced_value_float=float("nan")),
        helper.make_node("ArrayFeatureExtractor", ["imputed", "numeric"], ["ab"], domain="ai.onnx.ml"),
        helper.make_node("Scaler", ["ab"], ["scaled"], domain="ai.onnx.ml", offset=[0.5, -1.0], scale=[2.0, 0.25]),
        helper.make_node("Normalizer", ["scaled"], ["normalised"], domain="ai.onnx.ml", norm="L2"),
        helper.make_node("ArrayFeatureExtractor", ["imputed", "category"], ["c"], domain="ai.onnx.ml"),
        helper.make_node("Cast", ["c"], ["c64"], to=TensorProto.INT64),
        helper.make_node("OneHotEncoder", ["c64"], ["hot"], domain="ai.onnx.ml", cats_int64s=[0, 1, 2], zeros=1),
        helper.make_node("Reshape", ["hot", "shape"], ["flat"]),
        helper.make_node("Concat", ["normalised", "flat"], ["z"], axis=1),
        helper.make_node("LinearClassifier", ["z"], ["label", "probabilities"], domain="ai.onnx.ml",
                         coefficients=[-0.3, 0.1, 0.2, 0.4, -0.5, 0.3, 0.7, -0.9, 1.1, -0.2], intercepts=[0.2, -0.2],
                         classlabels_ints=[0, 1], post_transform="LOGISTIC"),
    ]
    initializers = [numpy_helper.from_array(np.asarray([0, 1], dtype=np.int64), "numeric"),
                    numpy_helper.from_array(np.asarray([2], dtype=np.int64), "category"),
                    numpy_helper.from_array(np.asarray([-1, 3], dtype=np.int64), "shape")]
    graph = helper.make_graph(nodes, "pipeline", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 9
    onnx_bytes = model.SerializeToString()
    rng = np.random.default_rng(5)
    train = np.column_stack([rng.normal(1, 2, 500), rng.normal(-1, 3, 500), rng.integers(0, 4, 500)])
    train[rng.random(500) < 0.1, 0] = np.nan
    explainer = explain.Explainer.from_onnx(explain.with_background(onnx_bytes, train))
    rows = train[:50]
    contributions = explained(explainer, onnx_bytes, rows)

    # numpy reference: z from the operators' definitions, w (z - E[z]) summed per source column
    def transform(X: np.ndarray) -> np.ndarray:
        X = X.astype(np.float32).astype(np.float64)
        a = np.where(np.isnan(X[:, 0]), 1.5, X[:, 0])
        b = np.where(np.isnan(X[:, 1]), -2.0, X[:, 1])
        ab = np.column_stack([(a - 0.5) * 2.0, (b + 1.0) * 0.25])
        ab /= np.linalg.norm(ab, axis=1, keepdims=True)
        return np.column_stack([ab, (X[:, 2:3] == np.arange(3)).astype(float)])

    weights = np.float32([0.3, 0.7, -0.9, 1.1, -0.2]).astype(np.float64)  # the positive class's row
    terms = weights * (transform(rows) - transform(train).mean(axis=0))
    np.testing.assert_allclose(contributions, np.column_stack([terms[:, 0], terms[:, 1], terms[:, 2:].sum(axis=1)]),
                               atol=1e-12)


# ---- the response shape and reason codes -------------------------------------------------------------------------

def with_metadata(onnx_bytes: bytes, **entries: str) -> bytes:
    model = onnx.load_from_string(onnx_bytes)
    for key, value in entries.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def test_explain_returns_contributions_and_reasons_toward_the_unfavourable_outcome(boosting: Served) -> None:
    artifact = explain.with_background(boosting.onnx_bytes, boosting.X)
    explainer = explain.Explainer.from_onnx(artifact)
    rows = boosting.rows[:40].copy()
    rows[0, 1], rows[1, 1], rows[2, 2] = 5, np.nan, np.nan  # "other", missing region, missing income
    explanations = explainer.explain(rows)
    matrix = np.asarray([[e["contributions"][f.name] for f in boosting.family.features] for e in explanations])
    assert_additive(explainer, artifact, rows, matrix)
    names = [f.name for f in boosting.family.features]
    for x, explanation in zip(rows, explanations, strict=True):
        assert set(explanation) == {"output", "base_value", "contributions", "reasons"}
        assert explanation["output"] == "log_odds" and list(explanation["contributions"]) == names
        reasons = explanation["reasons"]
        pushing_up = sorted((v for v in explanation["contributions"].values() if v > 0), reverse=True)
        assert [r["contribution"] for r in reasons] == pushing_up  # the positive class (default) is unfavourable
        for reason in reasons:
            feature = boosting.family.feature(reason["feature"])
            assert reason.get("description") == feature.description
            raw = x[names.index(feature.name)]
            if np.isnan(raw):
                assert reason["value"] is None
            elif feature.kind == "categorical":
                assert reason["value"] == (feature.categories[int(raw)] if raw < len(feature.categories) else "other")
            else:
                assert reason["value"] == raw
    top = explainer.explain(rows, top=2)
    assert all(t["reasons"] == e["reasons"][:2] for t, e in zip(top, explanations, strict=True))
    assert all(not e["reasons"] for e in explainer.explain(rows, top=0))


def test_reasons_point_the_other_way_when_the_positive_class_is_favourable(logistic: Served) -> None:
    artifact = with_metadata(explain.with_background(logistic.onnx_bytes, logistic.X),
                             **{"mlops.favorable_label": "1"})
    explainer = explain.Explainer.from_onnx(artifact)
    for explanation in explainer.explain(logistic.rows[:20]):
        pushing_down = sorted(v for v in explanation["contributions"].values() if v < 0)
        assert [r["contribution"] for r in explanation["reasons"]] == pushing_down
    assert explain.Explainer.from_onnx(artifact, unfavourable_positive=True).explain(logistic.rows[:1])[0][
        "reasons"][0]["contribution"] > 0


# ---- background storage and errors ----------------------------------------------------------------------------------

def test_with_background_appends_one_entry_and_leaves_the_model_unchanged(forest: Served) -> None:
    artifact = explain.with_background(forest.onnx_bytes, forest.X)
    assert artifact.startswith(forest.onnx_bytes)
    again = explain.with_background(artifact, forest.X[:100])
    entries = [e for e in onnx.load_from_string(again).metadata_props if e.key == explain.METADATA_KEY]
    assert len(entries) == 1 and '"rows":100' in entries[0].value
    session = ort.InferenceSession(again, providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(forest.onnx_bytes, providers=["CPUExecutionProvider"])
    x = {"X": forest.rows.astype(np.float32)}
    np.testing.assert_array_equal(session.run(None, x)[1], original.run(None, x)[1])
    assert explain.METADATA_KEY in session.get_modelmeta().custom_metadata_map


def test_artifact_without_background_or_with_foreign_covers_is_refused_clearly(forest: Served,
                                                                               logistic: Served) -> None:
    with pytest.raises(ConfigurationError, match="no node covers"):
        explain.Explainer.from_onnx(forest.onnx_bytes)
    with pytest.raises(ConfigurationError, match="no training baseline"):
        explain.Explainer.from_onnx(logistic.onnx_bytes)
    covers = sklearn_covers(forest.classifier)
    broken = [c.copy() for c in covers]
    broken[3][1] += 7
    with pytest.raises(ConfigurationError, match="do not add up"):
        explain.Explainer.from_onnx(forest.onnx_bytes, covers=broken)
    with pytest.raises(ConfigurationError, match="covers hold"):
        explain.Explainer.from_onnx(forest.onnx_bytes, covers=covers[:-1])
    with pytest.raises(ConfigurationError, match="baseline holds"):
        explain.Explainer.from_onnx(logistic.onnx_bytes, baseline=np.zeros(3))
    with pytest.raises(ConfigurationError, match="not a tree ensemble"):
        explain.tree_covers(logistic.onnx_bytes, logistic.X)


def test_malformed_rows_get_a_validation_error_naming_the_problem(forest: Served) -> None:
    explainer = explain.Explainer.from_onnx(forest.onnx_bytes, covers=sklearn_covers(forest.classifier))
    with pytest.raises(ValidationError, match="rows of 7 features"):
        explainer.explain(np.zeros((2, 6)))
    with pytest.raises(ValidationError, match="finite"):
        explainer.explain(np.full((1, 7), np.inf))
    row = forest.rows[:1].copy()
    row[0, 3] = np.nan  # "debt ratio" rejects missing values
    with pytest.raises(ValidationError, match="debt ratio"):
        explainer.explain(row)
    with pytest.raises(ValidationError, match="numbers"):
        explainer.explain(np.asarray([["a"] * 7]))
    with pytest.raises(ValidationError, match="top"):
        explainer.explain(forest.rows[:1], top=-1)
    with pytest.raises(ValidationError, match="training rows"):
        explain.tree_covers(forest.onnx_bytes, np.zeros((0, 7)))


def test_unsupported_graphs_are_refused_with_the_operator_named() -> None:
    node = helper.make_node("Sqrt", ["X"], ["root"])
    model_node = helper.make_node("LinearRegressor", ["root"], ["Y"], domain="ai.onnx.ml", coefficients=[1.0, 2.0])
    graph = helper.make_graph([node, model_node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                                                      [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    with pytest.raises(ConfigurationError, match="'Sqrt'"):
        explain.Explainer.from_onnx(model.SerializeToString(), baseline=np.zeros(2))
    identity = helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "g",
                                 [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                                 [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])])
    with pytest.raises(ConfigurationError, match="exactly one tree ensemble or linear model"):
        explain.Explainer.from_onnx(helper.make_model(identity).SerializeToString())
