"""Cluster-facing configuration: settings, connections to Ray and object storage."""
