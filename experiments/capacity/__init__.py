"""The capacity study: predictive scaling vs the HPA vs static peak provisioning."""
