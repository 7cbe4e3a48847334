"""One module per op; importing it registers its benchmark cases."""
