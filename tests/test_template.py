"""template.yaml: lints clean, transforms offline with samtranslator, and deploys what the
pipeline promises (encryption, TLS only, DLQ, concurrency cap, least-privilege IAM).

Checks run on the CloudFormation that SAM's own translator produces, so what is asserted is
what CloudFormation would create. Intrinsic functions are resolved by a small evaluator with a
made-up stack, so ARNs and names are compared as the strings AWS would see.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
from scorer import budget, config, schema

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"

STACK = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "ap-southeast-2",
    "AWS::Partition": "aws",
    # A stack name in mixed case: the bucket name must come out lower case anyway.
    "AWS::StackName": "EcgScorer-Prod",
    "AWS::StackId": "arn:aws:cloudformation:ap-southeast-2:123456789012:stack/EcgScorer-Prod/"
    "5d1c9e40-2b4f-11ef-9a3c-0a1b2c3d4e5f",
}
EXPECTED_BUCKET = "ecg-ingest-123456789012-ap-southeast-2-5d1c9e40"
# The only actions with Resource "*": X-Ray has no resource-level permissions.
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
CONTRACT_ENV = set(config.REQUIRED)  # every setting the function requires


class _NoManagedPolicies:
    """Stands in for samtranslator's IAM-backed loader: the template names no managed policy."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(sam)
    # `sam package` swaps the local CodeUri for the uploaded zip; the translator wants an S3 URI.
    doc["Resources"]["ScoreFunction"]["Properties"]["CodeUri"] = "s3://artifacts/score.zip"
    return transform(doc, {}, _NoManagedPolicies())


def resources(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: res.get("Properties", {})
        for name, res in cfn["Resources"].items()
        if res["Type"] == kind
    }


def props(cfn: dict[str, Any], name: str) -> dict[str, Any]:
    return cfn["Resources"][name]["Properties"]


def resolve(node: Any, cfn: dict[str, Any], local: dict[str, str] | None = None) -> Any:
    """Evaluate Ref/Sub/Select/Split against STACK and the parameter defaults.

    References to resources become "<Name>" and "<Name.Attr>" so they can be compared.
    """
    env = {**STACK, **{k: str(v.get("Default")) for k, v in cfn["Parameters"].items()}}
    env.update(local or {})
    if isinstance(node, list):
        return [resolve(item, cfn, local) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) != 1:
        return {key: resolve(value, cfn, local) for key, value in node.items()}
    ((fn, arg),) = node.items()
    if fn == "Ref":
        return env.get(arg, f"<{arg}>")
    if fn == "Fn::GetAtt":
        return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
    if fn == "Fn::Split":
        return resolve(arg[1], cfn, local).split(arg[0])
    if fn == "Fn::Select":
        return resolve(arg[1], cfn, local)[int(arg[0])]
    if fn == "Fn::Sub":
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        values = {**env, **{k: resolve(v, cfn, local) for k, v in variables.items()}}
        return re.sub(
            r"\$\{([^}!]+)\}",
            lambda m: values.get(m.group(1), f"<{m.group(1)}>"),
            text,
        )
    return {fn: resolve(arg, cfn, local)}


def statements(cfn: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of every identity policy (roles and standalone policies)."""
    found = []
    for kind in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for p in resources(cfn, kind).values():
            docs = [pol["PolicyDocument"] for pol in p.get("Policies", [])]
            if "PolicyDocument" in p:
                docs.append(p["PolicyDocument"])
            for doc in docs:
                found.extend(doc["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_for(cfn: dict[str, Any], action: str) -> dict[str, Any]:
    matching = [s for s in statements(cfn) if action in as_list(s["Action"])]
    assert len(matching) == 1, f"expected one statement granting {action}"
    return matching[0]


def test_cfn_lint_reports_nothing() -> None:
    assert [str(m) for m in lint_file(TEMPLATE)] == []


def test_bucket_is_versioned_encrypted_and_private(cfn: dict[str, Any]) -> None:
    bucket = props(cfn, "IngestBucket")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert cfn["Resources"]["IngestBucket"]["DeletionPolicy"] == "Retain"


def test_bucket_name_is_lower_case_and_unique_per_stack(cfn: dict[str, Any]) -> None:
    name = resolve(props(cfn, "IngestBucket")["BucketName"], cfn)
    assert name == EXPECTED_BUCKET
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name)
    longest_region = {"AWS::Region": "ap-southeast-5"}
    assert len(resolve(props(cfn, "IngestBucket")["BucketName"], cfn, longest_region)) <= 63


def test_bucket_refuses_requests_without_tls(cfn: dict[str, Any]) -> None:
    policy = props(cfn, "IngestBucketPolicy")
    assert policy["Bucket"] == {"Ref": "IngestBucket"}
    denies = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denies) == 1
    assert denies[0]["Principal"] == "*" and denies[0]["Action"] == "s3:*"
    covered = resolve(denies[0]["Resource"], cfn)
    assert covered == ["<IngestBucket.Arn>", "<IngestBucket.Arn>/*"]


def test_who_uploaded_each_file_is_logged_to_a_private_bucket(cfn: dict[str, Any]) -> None:
    logging_config = props(cfn, "IngestBucket")["LoggingConfiguration"]
    assert logging_config == {
        "DestinationBucketName": {"Ref": "AccessLogBucket"},
        "LogFilePrefix": "ingest/",
    }
    logs = props(cfn, "AccessLogBucket")
    (rule,) = logs["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"  # log delivery: SSE-S3
    assert all(logs["PublicAccessBlockConfiguration"].values())
    assert cfn["Resources"]["AccessLogBucket"]["DeletionPolicy"] == "Retain"
    (expire,) = logs["LifecycleConfiguration"]["Rules"]
    assert expire["ExpirationInDays"] == {"Ref": "AccessLogRetentionDays"}
    policy = props(cfn, "AccessLogBucketPolicy")["PolicyDocument"]["Statement"]
    (grant,) = [s for s in policy if s["Effect"] == "Allow"]
    # Only S3's log delivery, only for the ingest bucket of this account, only under ingest/.
    assert grant["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert grant["Action"] == "s3:PutObject"
    assert resolve(grant["Resource"], cfn) == "<AccessLogBucket.Arn>/ingest/*"
    condition = resolve(grant["Condition"], cfn)
    assert condition["ArnLike"]["aws:SourceArn"] == f"arn:aws:s3:::{EXPECTED_BUCKET}"
    assert condition["StringEquals"]["aws:SourceAccount"] == STACK["AWS::AccountId"]
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in str(s) for s in policy)


def test_uploads_under_incoming_notify_the_scoring_queue(cfn: dict[str, Any]) -> None:
    notes = props(cfn, "IngestBucket")["NotificationConfiguration"]
    assert set(notes) == {"QueueConfigurations"}
    (target,) = notes["QueueConfigurations"]
    assert target["Event"] == "s3:ObjectCreated:*"
    assert target["Queue"] == {"Fn::GetAtt": ["ScoringQueue", "Arn"]}
    assert target["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]


def test_only_this_bucket_may_send_to_the_scoring_queue(cfn: dict[str, Any]) -> None:
    policy = props(cfn, "ScoringQueuePolicy")
    assert policy["Queues"] == [{"Ref": "ScoringQueue"}]
    (allow,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    condition = resolve(allow["Condition"], cfn)
    assert condition["ArnLike"]["aws:SourceArn"] == f"arn:aws:s3:::{EXPECTED_BUCKET}"
    assert condition["StringEquals"]["aws:SourceAccount"] == STACK["AWS::AccountId"]
    # S3 checks the queue policy when the notification is set: the policy must come first.
    assert "ScoringQueuePolicy" in as_list(cfn["Resources"]["IngestBucket"]["DependsOn"])


def test_queues_are_encrypted_and_failures_land_in_the_dlq(cfn: dict[str, Any]) -> None:
    queue, dlq = props(cfn, "ScoringQueue"), props(cfn, "DeadLetterQueue")
    assert queue["SqsManagedSseEnabled"] is True
    assert dlq["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    for name in ("ScoringQueuePolicy", "DeadLetterQueuePolicy"):
        denies = [
            s for s in props(cfn, name)["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
        ]
        assert denies and denies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_visibility_timeout_covers_six_function_timeouts(cfn: dict[str, Any]) -> None:
    function = props(cfn, "ScoreFunction")
    mapping = next(iter(resources(cfn, "AWS::Lambda::EventSourceMapping").values()))
    window = int(resolve(mapping["MaximumBatchingWindowInSeconds"], cfn))
    assert props(cfn, "ScoringQueue")["VisibilityTimeout"] >= 6 * function["Timeout"] + window
    # With the largest batching window the parameter allows, it still holds.
    largest_window = cfn["Parameters"]["BatchingWindowSeconds"]["MaxValue"]
    assert (
        props(cfn, "ScoringQueue")["VisibilityTimeout"] >= 6 * function["Timeout"] + largest_window
    )


def test_event_source_reports_partial_failures_and_caps_concurrency(cfn: dict[str, Any]) -> None:
    (mapping,) = resources(cfn, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["ScoringQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "ScoreFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaxConcurrency"}}
    assert mapping["BatchSize"] == {"Ref": "BatchSize"}
    assert "MaximumBatchingWindowInSeconds" in mapping
    concurrency = cfn["Parameters"]["MaxConcurrency"]
    # The endpoint's default MaxConcurrency; Lambda refuses a MaximumConcurrency below 2.
    assert concurrency["Default"] == 10
    assert concurrency["MinValue"] == 2


def test_function_runs_the_scorer_with_the_contract_environment(cfn: dict[str, Any]) -> None:
    function = props(cfn, "ScoreFunction")
    assert function["Runtime"] == "python3.12"
    assert function["Handler"] == "scorer.app.lambda_handler"
    assert function["TracingConfig"] == {"Mode": "Active"}
    env = function["Environment"]["Variables"]
    assert set(env) >= CONTRACT_ENV
    assert env["PREDICTIONS_TABLE"] == {"Ref": "PredictionsTable"}
    assert env["ENDPOINT_NAME"] == {"Ref": "EndpointName"}
    defaults = {k: resolve(v, cfn) for k, v in env.items()}
    assert defaults["MODEL_LEADS"] == "I,II,V2"
    assert defaults["MODEL_SAMPLING_RATE_HZ"] == "200"
    assert defaults["WINDOW_SAMPLES"] == "2000"
    assert int(defaults["MAX_PAYLOAD_BYTES"]) <= 4 * 1024 * 1024
    log_group = props(cfn, "ScoreFunctionLogGroup")
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": "ScoreFunctionLogGroup"}}
    assert isinstance(resolve(log_group["RetentionInDays"], cfn), str)


def test_the_function_accepts_the_environment_the_template_sets(cfn: dict[str, Any]) -> None:
    variables = props(cfn, "ScoreFunction")["Environment"]["Variables"]
    env = {name: str(resolve(value, cfn)) for name, value in variables.items()}
    settings = config.load_settings(env)
    assert settings.model_leads == ("I", "II", "V2")
    assert settings.window_samples == 2000


def test_sam_codeuri_and_handler_point_at_the_scorer_package(sam: dict[str, Any]) -> None:
    function = sam["Resources"]["ScoreFunction"]["Properties"]
    code = TEMPLATE.parent / function["CodeUri"]
    module, _, handler = function["Handler"].rpartition(".")
    source = (code / module.replace(".", "/")).with_suffix(".py")
    assert (code / "requirements.txt").is_file()
    assert source.is_file(), f"Handler {function['Handler']} needs {source}"
    assert f"def {handler}(" in source.read_text()


def test_table_keys_and_indexes_are_the_schema(cfn: dict[str, Any]) -> None:
    table = props(cfn, "PredictionsTable")
    assert table["KeySchema"] == [
        {"AttributeName": schema.PK, "KeyType": "HASH"},
        {"AttributeName": schema.SK, "KeyType": "RANGE"},
    ]
    indexes = {}
    for gsi in table["GlobalSecondaryIndexes"]:
        keys = {k["KeyType"]: k["AttributeName"] for k in gsi["KeySchema"]}
        indexes[gsi["IndexName"]] = (keys["HASH"], keys["RANGE"])
        # Lean indexes (write cost): what list views show, never the per-window figures.
        assert gsi["Projection"] == {
            "ProjectionType": "INCLUDE",
            "NonKeyAttributes": list(schema.INDEX_PROJECTION),
        }
    assert indexes == schema.INDEXES
    key_attributes = {schema.PK, schema.SK} | {a for pair in schema.INDEXES.values() for a in pair}
    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]} == {
        name: "S" for name in key_attributes
    }


def test_table_is_on_demand_recoverable_encrypted_and_protected(cfn: dict[str, Any]) -> None:
    table = props(cfn, "PredictionsTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["DeletionProtectionEnabled"] is True
    assert cfn["Resources"]["PredictionsTable"]["DeletionPolicy"] == "Retain"


def test_local_stack_can_read_table_and_queue_properties_literally(sam: dict[str, Any]) -> None:
    # ecg_scorer.local creates its table from these properties: no intrinsic may hide in them.
    table = sam["Resources"]["PredictionsTable"]["Properties"]
    literal = {k: table[k] for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes")}
    assert "Fn::" not in repr(literal) and "'Ref'" not in repr(literal)


def test_no_wildcard_resource_but_xray_and_no_managed_policy(cfn: dict[str, Any]) -> None:
    all_statements = statements(cfn)
    assert all_statements
    for statement in all_statements:
        if statement["Effect"] != "Allow":
            continue
        actions = set(as_list(statement["Action"]))
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement
        if "*" in as_list(statement["Resource"]):
            assert actions == XRAY_ACTIONS, statement
    for role in resources(cfn, "AWS::IAM::Role").values():
        arns = [str(resolve(a, cfn)) for a in role.get("ManagedPolicyArns", [])]
        assert not [a for a in arns if "FullAccess" in a]
        assert arns == []


def test_invoke_endpoint_is_granted_on_the_one_endpoint(cfn: dict[str, Any]) -> None:
    statement = statement_for(cfn, "sagemaker:InvokeEndpoint")
    assert as_list(statement["Action"]) == ["sagemaker:InvokeEndpoint"]
    arn = resolve(statement["Resource"], cfn, {"EndpointName": "ecg-prod"})
    assert arn == "arn:aws:sagemaker:ap-southeast-2:123456789012:endpoint/ecg-prod"
    # SageMaker ARNs hold the endpoint name in lower case; IAM compares case-sensitively.
    pattern = cfn["Parameters"]["EndpointName"]["AllowedPattern"]
    assert re.fullmatch(pattern, cfn["Parameters"]["EndpointName"]["Default"])
    assert not re.fullmatch(pattern, "Ecg-Prod")


def test_s3_access_is_read_uploads_and_write_only_the_pipelines_own_prefixes(
    cfn: dict[str, Any],
) -> None:
    bucket = f"arn:aws:s3:::{EXPECTED_BUCKET}"
    read = statement_for(cfn, "s3:GetObject")
    assert set(as_list(read["Action"])) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert resolve(read["Resource"], cfn) == [f"{bucket}/incoming/*", f"{bucket}/work/*"]
    write = statement_for(cfn, "s3:PutObject")
    # Never under incoming/: nothing the pipeline writes can trigger it or touch an upload.
    assert resolve(write["Resource"], cfn) == [f"{bucket}/results/*", f"{bucket}/work/*"]
    listing = statement_for(cfn, "s3:ListBucket")
    assert resolve(listing["Resource"], cfn) == bucket
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "incoming/*"}}
    granted = {a for s in statements(cfn) for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert granted == {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:ListBucket"}


def test_table_access_is_limited_to_the_one_table(cfn: dict[str, Any]) -> None:
    statement = statement_for(cfn, "dynamodb:PutItem")
    assert statement["Resource"] == {"Fn::GetAtt": ["PredictionsTable", "Arn"]}
    # Conditional PutItems (results), UpdateItem (a long recording's set of done chunks),
    # GetItem (a job or a record's item, where a decision depends on it): no Query, no Scan.
    granted = {
        a for s in statements(cfn) for a in as_list(s["Action"]) if a.startswith("dynamodb:")
    }
    assert granted == {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"}


def test_queue_access_is_limited_to_the_scoring_queue(cfn: dict[str, Any]) -> None:
    statement = statement_for(cfn, "sqs:ReceiveMessage")
    assert statement["Resource"] == {"Fn::GetAtt": ["ScoringQueue", "Arn"]}
    send = statement_for(cfn, "sqs:SendMessage")  # chunk orders and second looks, to itself
    assert send["Resource"] == {"Fn::GetAtt": ["ScoringQueue", "Arn"]}
    # No ChangeMessageVisibility: failed messages go back through batchItemFailures.
    granted = {a for s in statements(cfn) for a in as_list(s["Action"]) if a.startswith("sqs:")}
    assert granted == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
    }
    logs = statement_for(cfn, "logs:PutLogEvents")
    assert logs["Resource"] == {"Fn::GetAtt": ["ScoreFunctionLogGroup", "Arn"]}


@pytest.mark.parametrize(
    ("alarm", "namespace", "metric", "dimension"),
    [
        (
            "DeadLetterQueueAlarm",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "<DeadLetterQueue.QueueName>",
        ),
        ("ScoreFunctionErrorsAlarm", "AWS/Lambda", "Errors", "<ScoreFunction>"),
        ("EndpointErrorsAlarm", "AWS/SageMaker", "Invocation5XXErrors", "cnn1d-lstm-ecg-v1"),
        (
            "EndpointSaturatedAlarm",
            "AWS/SageMaker",
            "ServerlessConcurrentExecutionsUtilization",
            "cnn1d-lstm-ecg-v1",
        ),
    ],
)
def test_alarms_watch_the_dlq_function_and_endpoint(
    cfn: dict[str, Any], alarm: str, namespace: str, metric: str, dimension: str
) -> None:
    p = props(cfn, alarm)
    assert (p["Namespace"], p["MetricName"]) == (namespace, metric)
    assert resolve(p["Dimensions"][0]["Value"], cfn) == dimension
    assert p["AlarmActions"] == {
        "Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]
    }


def test_system_faults_alarm_watches_the_functions_own_metric(cfn: dict[str, Any]) -> None:
    p = props(cfn, "SystemFaultsAlarm")
    env = {
        k: resolve(v, cfn)
        for k, v in props(cfn, "ScoreFunction")["Environment"]["Variables"].items()
    }
    # Powertools Metrics publishes under POWERTOOLS_METRICS_NAMESPACE with the dimension
    # service = POWERTOOLS_SERVICE_NAME; the alarm must name exactly those.
    assert (p["Namespace"], p["MetricName"]) == (
        env["POWERTOOLS_METRICS_NAMESPACE"],
        "SystemFaults",
    )
    assert p["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
    assert (p["Statistic"], p["Period"], p["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (p["ComparisonOperator"], p["Threshold"]) == ("GreaterThanThreshold", 0)
    assert p["TreatMissingData"] == "notBreaching"
    assert p["AlarmActions"] == {
        "Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]
    }
    # and the function really emits that metric name
    app = (TEMPLATE.parent / "functions" / "scorer" / "app.py").read_text()
    assert 'name="SystemFaults"' in app


def test_function_timeout_covers_slow_calls_within_the_budget(cfn: dict[str, Any]) -> None:
    """The code starts a call only when its worst case fits before the reserve; the timeout
    must leave room for an S3 read, two endpoint attempts and the writes."""
    timeout = props(cfn, "ScoreFunction")["Timeout"]
    needed = budget.S3_READ_WORST_S + 2 * budget.ENDPOINT_ATTEMPT_S + budget.SAFETY_MARGIN_S
    assert timeout >= needed
    assert timeout <= 900  # Lambda's maximum


def test_dlq_alarm_fires_on_the_first_message(cfn: dict[str, Any]) -> None:
    p = props(cfn, "DeadLetterQueueAlarm")
    assert (p["ComparisonOperator"], p["Threshold"]) == ("GreaterThanThreshold", 0)


def test_outputs_are_the_names_the_cli_reads(cfn: dict[str, Any]) -> None:
    assert set(cfn["Outputs"]) == {
        "IngestBucketName",
        "PredictionsTableName",
        "ScoringQueueUrl",
        "DeadLetterQueueUrl",
        "ScoreFunctionName",
        "AccessLogBucketName",
    }
    assert cfn["Outputs"]["PredictionsTableName"]["Value"] == {"Ref": "PredictionsTable"}
