"""The request fidelity: every request a SimPy process; the reference the flow model is
checked against."""
