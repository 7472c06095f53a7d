"""Infrastructure under the deployments: nodes, zones, placement and node conditions."""
