"""Storage: the artifact bucket (data sets, artifacts, captures, reports) and the registry table."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct
from mlops.registry.store import FAMILY_INDEX, FAMILY_LISTING_ATTRIBUTES, TTL_ATTRIBUTE


@dataclass(frozen=True)
class StorageProps:
    capture_retention_days: int
    report_retention_days: int


class Storage(Construct):
    """Retention is deliberate: data sets, artifacts and the registry are evidence for audits and are RETAINED
    when the stack is deleted (and the table has deletion protection); captures and drift reports expire."""

    def __init__(self, scope: Construct, construct_id: str, *, props: StorageProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN,
                           description="MLOps platform: artifacts, registry, logs, alerts")
        stack = Stack.of(self)
        # CloudWatch Logs must be allowed to use the key for the encrypted log groups.
        self.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                    f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"}},
        ))
        # Server access logs support only SSE-S3 on the target bucket.
        self.access_logs = s3.Bucket(
            self, "AccessLogs", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True, removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365),
                                              noncurrent_version_expiration=Duration.days(30))],
        )
        self.bucket = s3.Bucket(
            self, "Artifacts",
            encryption=s3.BucketEncryption.KMS, encryption_key=self.key, bucket_key_enabled=True,
            enforce_ssl=True, minimum_tls_version=1.2, versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix="artifacts/",
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireCaptures", prefix="captures/",
                                 expiration=Duration.days(props.capture_retention_days),
                                 noncurrent_version_expiration=Duration.days(1)),
                s3.LifecycleRule(id="ExpireDriftReports", prefix="reports/",
                                 expiration=Duration.days(props.report_retention_days),
                                 noncurrent_version_expiration=Duration.days(1)),
                s3.LifecycleRule(id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
                # SageMaker jobs' staged copies and model.tar.gz: the data set stays under datasets/, the artifacts
                # are stored content-addressed by CollectTrainingJob; kept a month for investigations.
                s3.LifecycleRule(id="ExpireTrainingJobFiles", prefix="training-jobs/", expiration=Duration.days(30),
                                 noncurrent_version_expiration=Duration.days(1)),
            ],
        )
        self.table = dynamodb.Table(
            self, "Registry",
            partition_key=dynamodb.Attribute(name="PK", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="SK", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
            # Run, drift-check and upload items expire; their reports stay in S3 (docs/registry.md, "Expiry").
            time_to_live_attribute=TTL_ATTRIBUTE,
        )
        self.table.add_global_secondary_index(
            index_name="GSI1",
            partition_key=dynamodb.Attribute(name="GSI1PK", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="GSI1SK", type=dynamodb.AttributeType.STRING),
        )
        # The family index: META items over FAMILY_INDEX_SHARDS partition keys, only what listings read projected.
        self.table.add_global_secondary_index(
            index_name=FAMILY_INDEX,
            partition_key=dynamodb.Attribute(name="GSI2PK", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="GSI2SK", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(FAMILY_LISTING_ATTRIBUTES),
        )

    def object_arns(self, prefix: str) -> str:
        return self.bucket.arn_for_objects(f"{prefix}*")
