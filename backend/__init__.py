"""Lookup service for reported stolen and lost travel documents."""
