"""mlmkit: masked language modeling on the Hugging Face stack."""

__version__ = "0.1.0"
