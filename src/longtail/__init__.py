"""longtail: representation and classifier learning from long-tailed (class-imbalanced) data."""

__version__ = "0.1.0"
