"""Curated medical knowledge graphs (networkx only, never torch): schema, IO, queries, claim checking."""
