"""pytest-dsrepro: prove that a data-science experiment reproduces in the project's image."""

__version__ = "0.1.0.dev0"
