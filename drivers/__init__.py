"""Capture drivers: cameras, serial document readers, folders and a simulator."""
