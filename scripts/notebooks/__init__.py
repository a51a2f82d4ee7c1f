"""Notebook sources: one module per notebook (nbNN_name.py with CELLS); scripts/make_notebooks.py builds them."""
