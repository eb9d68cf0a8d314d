"""The registry store (DynamoDB), lineage records, content-addressed artifacts (S3) and run records."""
