"""Border-control kiosk: read a travel document's MRZ and check it against the
list of reported stolen and lost documents."""

__version__ = "0.1.0"
