"""craik planner: model-predictive control over a world model's rollout energy."""
