"""Demand forecasting: models, their registry, conformal intervals and backtests."""
