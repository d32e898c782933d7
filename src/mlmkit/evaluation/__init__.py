"""Model-independent scoring of masked language models: fixed masks, PLL, word classes, probes."""
