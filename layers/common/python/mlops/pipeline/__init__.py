"""Entry points that start or follow the state machine: the S3 upload trigger and the execution status-change
handler."""
