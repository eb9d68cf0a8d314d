"""Data sets: reading and validating CSV (gzip) and Parquet, and the synthetic families. Imports only mlops.core."""
