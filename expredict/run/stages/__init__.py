"""One module per stage of the run: configuration -> library call -> writes through ``RunDir``."""
