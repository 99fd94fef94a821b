"""craik bringup: the `craik` command line and the graph descriptions of the craik stack."""
