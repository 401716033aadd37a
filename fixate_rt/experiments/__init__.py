"""Experiments around simulated clicks: counterfactual slates, policy comparison, position bias, click logs."""
