"""Report writers: the reports layer (Jinja2 templates, pygal SVG charts; 1.5 MiB unzipped) on the functions that
draw report pages, and where they write them. The control function writes each version's model card (HTML and
JSON) at registration and when its run ends; the drift function writes each drift report's page beside its JSON
(its PutObject on the drift report prefix is granted by the monitoring construct)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_lambda as lambda_
from constructs import Construct
from mlops.reports.publish import MODEL_CARD_PREFIX

from .functions import PlatformFunction
from .storage import Storage


@dataclass(frozen=True)
class ReportWritersProps:
    storage: Storage
    layer: lambda_.ILayerVersion
    control: PlatformFunction
    drift: PlatformFunction


class ReportWriters(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: ReportWritersProps) -> None:
        super().__init__(scope, construct_id)
        for writer in (props.control, props.drift):
            writer.function.add_layers(props.layer)
        props.control.allow(["s3:PutObject"], [props.storage.object_arns(MODEL_CARD_PREFIX)],
                            reason="one model card (HTML and JSON) per version, keyed by family and version; "
                                   "prefix-scoped")
        props.control.allow(["kms:GenerateDataKey"], [props.storage.key.key_arn])
