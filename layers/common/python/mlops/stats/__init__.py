"""Pure statistics, no AWS and no I/O: PSI, KS, chi-square and binning (distributions), metrics, fairness,
canary divergence, baseline profiles and the per-task figures. Imports only mlops.core."""
