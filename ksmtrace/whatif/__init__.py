"""What-if analysis on the merge engine: knob sweeps, CPU budgets, co-location, tenancy."""
