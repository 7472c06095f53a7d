"""Capacity ahead of demand: the predictive scaler beside the HPA."""
