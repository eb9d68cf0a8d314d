"""The sagemaker training engine at deploy time (issue 15): per-family job roles scoped to the family's prefixes,
what the state machine may do, the train function's settings, the definition's engine choice, the archives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from mlops.core.settings import Env
from mlops.data import synthetic
from mlops.training.engines import CHANNEL_CONFIG, CHANNEL_DATA, JOB_CONFIG_FILE, RESULT_FILE

from infra.training_jobs import dependency_archive, source_archive

from .conftest import ROOT

DEFINITION = json.loads((ROOT / "infra" / "statemachine" / "pipeline.asl.json").read_text())


def _policies_of(synthesized, role_logical: str) -> list[dict]:
    return [s for p in synthesized.resources("AWS::IAM::Policy").values()
            if any(r.get("Ref") == role_logical for r in p["Properties"]["Roles"])
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _job_roles(synthesized) -> dict[str, dict]:
    return {k: v for k, v in synthesized.resources("AWS::IAM::Role").items()
            if v["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"].get("Service")
            == "sagemaker.amazonaws.com"}


def test_each_dedicated_family_has_a_job_role_that_reaches_only_its_own_prefixes(synthesized):
    roles = _job_roles(synthesized)
    # The test context declares credit-risk dedicated (its own role) and loan-default shared (the tier's role).
    assert sorted(k[:len("TrainingJobsRoleCreditRisk")] for k in roles) == ["TrainingJobsRoleCreditRisk",
                                                                           "TrainingJobsRoleSharedTier"]
    for logical in (k for k in roles if "CreditRisk" in k):
        statements = _policies_of(synthesized, logical)
        s3 = [s for s in statements if any(a.startswith("s3:") for a in _list(s["Action"]))]
        text = json.dumps(s3)
        assert "training-jobs/credit-risk/*" in text and "datasets/" not in text and "artifacts/" not in text
        listing = next(s for s in s3 if _list(s["Action"]) == ["s3:ListBucket"])
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["training-jobs/credit-risk/*"]}}
        actions = {a for s in statements for a in _list(s["Action"])}
        assert not any(a.startswith(("dynamodb:", "lambda:", "states:", "iam:")) for a in actions)


def test_state_machine_starts_only_the_families_jobs_and_passes_only_their_roles_to_sagemaker(synthesized):
    machine = next(m for k, m in synthesized.resources("AWS::StepFunctions::StateMachine").items()
                   if k.startswith("Pipeline"))
    statements = _policies_of(synthesized, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    create = next(s for s in statements if "sagemaker:CreateTrainingJob" in _list(s["Action"]))
    assert set(_list(create["Action"])) == {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
                                            "sagemaker:StopTrainingJob", "sagemaker:AddTags", "sagemaker:ListTags"}
    # Shared-tier families are registered at run time: their job names cannot be listed at deploy time.
    assert "training-job/*" in json.dumps(create["Resource"])
    passing = next(s for s in statements if _list(s["Action"]) == ["iam:PassRole"])
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert {r["Fn::GetAtt"][0] for r in _list(passing["Resource"])} == set(_job_roles(synthesized))
    rule = next(s for s in statements if "events:PutRule" in _list(s["Action"]))
    assert "StepFunctionsGetEventsForSageMakerTrainingJobsRule" in json.dumps(rule["Resource"])


def test_train_function_gets_the_engine_settings_and_room_to_spool(synthesized):
    train = next(f for f in synthesized.resources("AWS::Lambda::Function").values()
                 if f["Properties"]["Environment"]["Variables"].get(Env.SERVICE_NAME) == "mlops-train")
    variables = train["Properties"]["Environment"]["Variables"]
    for name in (Env.TRAINING_IMAGE, Env.TRAINING_CODE_URI, Env.TRAINING_VENDOR_URI, Env.TRAINING_ROLES,
                 Env.PLATFORM_KEY_ARN, Env.EPHEMERAL_STORAGE_MB):
        assert name in variables, name
    assert "sagemaker-scikit-learn:1.9-0-cpu-py3" in json.dumps(variables[Env.TRAINING_IMAGE])
    assert train["Properties"]["EphemeralStorage"] == {"Size": int(variables[Env.EPHEMERAL_STORAGE_MB])}
    assert synthesized.template["Mappings"]  # the image's registry account per region


def test_definition_plans_first_and_both_engines_reach_the_same_duplicate_check():
    states = DEFINITION["States"]
    assert DEFINITION["StartAt"] == "PlanTraining" and states["PlanTraining"]["Next"] == "DuplicateUpload?"
    assert states["DuplicateUpload?"]["Default"] == "AcquireRolloutLock"
    assert states["PlanTraining"]["Catch"][0]["Next"] == "HandleFailure"
    acquired = next(c for c in states["RolloutLockAcquired?"]["Choices"] if c.get("BooleanEquals") is True)
    assert acquired["Next"] == "TrainingEngine?"
    choice = states["TrainingEngine?"]
    assert choice["Choices"] == [{"Variable": "$.plan.engine", "StringEquals": "sagemaker",
                                  "Next": "TrainOnSageMaker"}] and choice["Default"] == "Train"
    job = states["TrainOnSageMaker"]
    assert job["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    assert job["Next"] == "CollectTrainingJob" and job["TimeoutSecondsPath"] == "$.plan.timeout_seconds"
    for name in ("Train", "CollectTrainingJob"):
        assert states[name]["ResultPath"] == "$.train" and states[name]["Next"] == "DuplicateContent?"


def test_source_archive_is_deterministic_and_its_launcher_runs_the_entry_point(tmp_path):
    first, second = source_archive(), source_archive()
    assert first == second and first.read_bytes() == second.read_bytes()
    code = tmp_path / "code"
    with tarfile.open(first) as tar:
        names = tar.getnames()
        tar.extractall(code, filter="data")
    assert "train.py" in names and "mlops/training/job.py" in names and not any("__pycache__" in n for n in names)
    base = tmp_path / "ml"
    family = synthetic.credit_risk_family(name="launch")
    data = base / "input" / "data" / CHANNEL_DATA
    config = base / "input" / "data" / CHANNEL_CONFIG
    data.mkdir(parents=True)
    config.mkdir(parents=True)
    (data / "data.csv").write_bytes(synthetic.credit_risk_csv(400, 3))
    (config / JOB_CONFIG_FILE).write_text(json.dumps({
        "family": family.model_dump(mode="json"), "artifact_bucket": "b", "git_revision": "", "data_file": "data.csv",
        "event": {"family": "launch", "dataset": {"bucket": "b", "key": "datasets/launch/a.csv", "version_id": "v1",
                                                  "etag": "e"}, "seed": 42, "run_id": "r", "trigger": {}}}))
    env = {"PATH": os.environ["PATH"], "SAGEMAKER_BASE_DIR": str(base), "SM_CHANNEL_VENDOR": str(tmp_path / "none"),
           "MLOPS_VENDOR_DIR": str(tmp_path / "vendor")}
    out = subprocess.run([sys.executable, "train.py"], cwd=code, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((base / "model" / RESULT_FILE).read_text())
    assert result["dataset"]["key"] == "datasets/launch/a.csv" and result["dataset"]["rows"] == 400
    assert (base / "model" / "artifacts" / result["artifact"]["sha256"]).is_file()


def test_dependency_archive_holds_the_train_functions_pinned_libraries():
    pins = {}
    for name in ("base", "training"):
        for line in (ROOT / "layers" / name / "requirements.txt").read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                package, version = line.split("==")
                pins[package.strip().lower().replace("-", "_")] = version.strip()
    with tarfile.open(dependency_archive()) as tar:
        found = {n.split("/")[0] for n in tar.getnames() if n.split("/")[0].endswith(".dist-info")}
    installed = {d.removesuffix(".dist-info").rsplit("-", 1)[0].lower(): d.removesuffix(".dist-info").rsplit("-", 1)[1]
                 for d in found}
    for package in ("scikit_learn", "skl2onnx", "onnx", "numpy", "pydantic", "orjson"):
        assert installed.get(package) == pins[package], package
    assert any(n.endswith("x86_64-linux-gnu.so") for n in _sample_names(dependency_archive()))


def _sample_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return [n for n in tar.getnames() if n.startswith("numpy/") and n.endswith(".so")]


def _list(value):
    return value if isinstance(value, list) else [value]
