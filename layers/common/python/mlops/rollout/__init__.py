"""Rollout control: canary checks, step up, promote and roll back, the rollout lock, the execution history and
the deploy-time family setup."""
